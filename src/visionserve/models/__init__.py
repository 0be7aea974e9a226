"""Pure inference classes per model family (no Ray), each behind a small registry."""
