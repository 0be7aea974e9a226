"""Parse every PDF under an S3 prefix with Ray Data; one JSON per document.

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.documents_batch --input s3://bucket/in/ --output s3://bucket/out/

S3 endpoint and credentials come from the flags or the VISIONSERVE_BLOBS__S3__*
settings of the submitting process, and are handed to the workers explicitly
(workers of a `ray start` cluster do not inherit the driver's environment). The
workers run the same pure pipeline classes as the Serve graph.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
import sys
import time
from typing import TYPE_CHECKING, Any

from visionserve.errors import public_failure

if TYPE_CHECKING:
    from visionserve.models.documents.config import Configuration

log = logging.getLogger("jobs.documents_batch")


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


class S3:
    """The few S3 calls the job needs, from explicit settings (picklable).

    The client comes from the blob store's factory (``store.blobs.s3_client``), so
    the job talks to S3 exactly as the services do; each worker builds its own.
    """

    def __init__(
        self, endpoint_url: str | None, key: str | None, secret: str | None, region: str
    ) -> None:
        from visionserve.settings import S3Settings

        self.settings = S3Settings(
            endpoint_url=endpoint_url,
            access_key_id=key,
            secret_access_key=secret,
            region=region,
            addressing_style="path",
        )
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from visionserve.store.blobs import s3_client

            self._client = s3_client(self.settings)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "_client": None}

    def list_pdfs(self, uri: str) -> list[str]:
        bucket, prefix = split_s3(uri)
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            keys += [
                o["Key"] for o in page.get("Contents", []) if o["Key"].lower().endswith(".pdf")
            ]
        return [f"s3://{bucket}/{k}" for k in keys]

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put_json(self, uri: str, value: Any) -> None:
        bucket, key = split_s3(uri)
        body = json.dumps(value).encode()
        self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


class ParseDocuments:
    """The Ray Data callable: one pipeline per worker, loaded once."""

    def __init__(
        self, s3: S3, output: str, config: Configuration, model_home: str, ocr_engine: str
    ) -> None:
        from visionserve.models.documents.pipeline import DocumentPipeline

        self.s3, self.output, self.config = s3, output.rstrip("/"), config
        self.pipeline = DocumentPipeline(model_home, ocr_engine=ocr_engine)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from visionserve.models.documents.pipeline import to_output

        statuses, outputs, errors = [], [], []
        for uri in batch["uri"]:
            name = posixpath.splitext(posixpath.basename(uri))[0]
            target = f"{self.output}/{name}.json"
            started = time.perf_counter()
            try:
                result = self.pipeline.parse(self.s3.get(uri), self.config)
                self.s3.put_json(
                    target,
                    {
                        "source": uri,
                        "page_count": result.page_count,
                        "page_errors": result.page_errors,
                        "chunks": to_output(result.chunks),
                        "seconds": round(time.perf_counter() - started, 3),
                    },
                )
                statuses.append("Succeeded")
                errors.append("")
            except Exception as exc:  # one bad document must not sink the batch
                # Its public face in the output; the traceback in this worker's log.
                failure = public_failure(exc, ref=f"document {uri}", logger=log)
                self.s3.put_json(
                    target,
                    {
                        "source": uri,
                        "error": failure.message,
                        "code": failure.code,
                        "category": failure.category,
                        "retryable": failure.retryable,
                    },
                )
                statuses.append("Failed")
                errors.append(failure.message)
            outputs.append(target)
        return {"uri": list(batch["uri"]), "output": outputs, "status": statuses, "error": errors}


def run(
    input_uri: str,
    output_uri: str,
    *,
    s3: S3,
    config: Configuration | dict[str, Any],
    model_home: str,
    ocr_engine: str = "tesseract",
    concurrency: int = 1,
    num_cpus: float = 1.0,
) -> list[dict[str, Any]]:
    """Parse every PDF under ``input_uri``; returns one status row per document.

    ``config`` is the task configuration of the documents API (a bad one is refused
    here, before any document is read).
    """
    import ray

    from visionserve.models.documents.config import Configuration, validated

    configuration = validated(Configuration, config)
    uris = s3.list_pdfs(input_uri)
    if not uris:
        return []
    ds = ray.data.from_items([{"uri": u} for u in uris])
    results = ds.map_batches(
        ParseDocuments,
        fn_constructor_kwargs={
            "s3": s3,
            "output": output_uri,
            "config": configuration,
            "model_home": model_home,
            "ocr_engine": ocr_engine,
        },
        batch_size=1,
        concurrency=concurrency,
        num_cpus=num_cpus,
    )
    rows: list[dict[str, Any]] = []
    # Streamed as documents finish: the job's log shows one progress line per document.
    for row in results.iter_rows():
        rows.append(dict(row))
        log.info("%d/%d documents: %s %s", len(rows), len(uris), row["status"], row["uri"])
    return rows


def main(argv: list[str] | None = None) -> int:
    from visionserve.settings import get_settings

    settings = get_settings()
    s3conf = settings.blobs.s3
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="s3://bucket/prefix with PDFs")
    parser.add_argument("--output", required=True, help="s3://bucket/prefix for the JSON files")
    parser.add_argument("--config", default="{}", help="chunkr configuration JSON")
    parser.add_argument("--endpoint-url", default=s3conf.endpoint_url)
    parser.add_argument("--access-key-id", default=s3conf.access_key_id)
    parser.add_argument("--secret-access-key", default=s3conf.secret_access_key)
    parser.add_argument("--region", default=s3conf.region)
    parser.add_argument("--model-home", default=str(settings.model_home))
    parser.add_argument("--ocr-engine", default=settings.documents.ocr_engine)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import ray

    ray.init(address="auto" if _cluster_running() else None, ignore_reinit_error=True)
    s3 = S3(args.endpoint_url, args.access_key_id, args.secret_access_key, args.region)
    rows = run(
        args.input,
        args.output,
        s3=s3,
        config=json.loads(args.config),
        model_home=args.model_home,
        ocr_engine=args.ocr_engine,
        concurrency=args.concurrency,
    )
    failed = [r for r in rows if r["status"] != "Succeeded"]
    log.info("parsed %d documents, %d failed", len(rows), len(failed))
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
    return 1 if failed else 0


def _cluster_running() -> bool:
    import os

    return bool(os.environ.get("RAY_ADDRESS"))


if __name__ == "__main__":
    raise SystemExit(main())
