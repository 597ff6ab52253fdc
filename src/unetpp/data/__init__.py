"""The data: sources (synthetic, Drishti-GS1, folder), ingest, the Great Expectations gate, and the
training dataset with its augmentation."""
