"""The test split, read from its source files: only the `test` stage scores it (the registry gate reads it
for information, never to decide). Ingest stores no arrays of it; each image is checked against the hash the
manifest keeps of it at data.image_size, so a source changed since ingest is refused, not scored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from unetpp.data.prepared import Case, load_manifest, sha256, split_ids
from unetpp.data.sources import READERS, RawSample
from unetpp.errors import UserError
from unetpp.params import DataParams
from unetpp.runtime.preprocess import resize_image


def heldout_samples(data: DataParams, class_names: list[str], prepared: Path) -> list[RawSample]:
    """The test split's samples from the source, as ingest saw them (the manifest's readable test rows)."""
    expected = set(split_ids(prepared, "test"))
    samples = [s for s in READERS[data.source](data, class_names) if s.id in expected]
    if {s.id for s in samples} != expected or not samples:
        missing = sorted(expected - {s.id for s in samples})[:10]
        raise UserError(
            f"the source no longer holds the test split ingest saw (missing: {', '.join(missing) or 'all'}); "
            "run `dvc repro` from ingest"
        )
    return samples


def heldout_cases(data: DataParams, class_names: list[str], prepared: Path) -> tuple[list[RawSample], Iterator[Case]]:
    """The test split's samples, and their cases read from the source files, each refused when its pixels
    differ from what ingest measured (the manifest's image_sha256)."""
    samples = heldout_samples(data, class_names, prepared)
    hashes = load_manifest(prepared).set_index("id")["image_sha256"].to_dict()

    def cases() -> Iterator[Case]:
        for sample in samples:
            loaded = sample.load()
            if sha256(resize_image(loaded.image, data.image_size)) != hashes[sample.id]:
                raise UserError(f"{sample.source_image}: changed since ingest; run `dvc repro` from ingest")
            yield Case(sample.id, loaded.image, loaded.masks)

    return samples, cases()
