"""The data: sources (synthetic, Drishti-GS1, folder), ingest and the splits ledger, the Great Expectations
gate, the prepared data's owner (`prepared`), the test split read from its sources (`heldout`), and the
training dataset with its augmentation."""
