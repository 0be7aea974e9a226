"""Shared machinery every surface uses: context, job worker, webhooks, egress, images, LLM."""
