"""The inference core: images in, probabilities out. No transport, no generated code.

One job a module; where to look:

What a model is and how it loads
    model_options   ``--model`` options and the default model -> ModelSpec
    models          ModelSpec / ModelInfo / LoadedModel, and load_model: weights or an exported graph
    weights         verifying a weights file's SHA-256 (pinned, given, or from its name)
    exported        an exported model on disk: ONNX graph + JSON manifest, written atomically
    architectures   the networks served: their preprocessing and ImageNet labels (no torch)
    preprocessing   resize, centre crop, normalise (Pillow and NumPy)
    efficientnet_lite0  the bundled model's weights and their key mapping onto timm's network
    backends        the Backend protocol; onnx_backend (ONNX Runtime); the [torch] extra's
                    torch_backend, torch_networks (building networks) and onnx_export

Serving requests
    engine          the inference path both transports call: admit, decode, batch, answer
    admission       the one limit on images held at once, and draining
    lifecycle       served versions: their batchers, warm-up and release
    batching        grouping single inputs into batches on a model's thread
    images          decoding untrusted image bytes within limits
    statistics      per-version counts and times (the OIP's statistics)
    threads, malloc_tuning   thread and memory placement that measured faster

Changing models while serving
    registry        the versions in memory, the current one of each model, request leases
    repository      the model repository on disk: DIR/NAME/VERSION/model.toml
    control         loading and unloading repository versions (explicit calls or polling)
"""
