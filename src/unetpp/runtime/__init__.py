"""What a served model needs and nothing else: image decoding, the one preprocessing and intensity reading,
the grid and the forward pass, the served model and its config (`served`), the guard, read-out, request
payloads and the request log. Imports only `unetpp.nn`, `unetpp.errors` and `unetpp.files`; shipped whole
inside every TorchServe archive."""
