"""What a served model needs and nothing else: image decoding, the one preprocessing, inference,
post-processing and read-out, request payloads. Imports only `unetpp.nn` and `unetpp.errors`;
shipped whole inside every TorchServe archive."""
