"""A plain Flask server of the model, written for comparison only (not part of deploybench).

    python benchmarks/reference/plain_flask.py --port 8001 --cpus 1 --threads 1

What a competent engineer writes in an afternoon: one ``POST /predict`` route taking
``{"inputs": [[...]]}``, orjson in and out, a shape check, the bundle's own
preprocess/predict/postprocess under ``torch.inference_mode()``, served by gunicorn's
gthread worker (one worker, keep-alive). No OpenAPI, no error contract beyond a 400.
``benchmarks/fidelity.py`` measures deploybench's Flask target against it.
"""

from __future__ import annotations

from typing import Any

from pinned import load_bundle, parser, pin


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--port", type=int, default=8001)
    options.add_argument("--threads", type=int, default=1)
    options.add_argument("--ready-file", default=None,
                         help="written once the worker has loaded the model")
    args = options.parse_args()
    pin(args.cpus)

    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {"bind": f"127.0.0.1:{args.port}", "workers": 1,
                               "worker_class": "gthread", "threads": args.threads,
                               "keepalive": 75, "accesslog": None,
                               "loglevel": "warning"}.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            app = create_app(args.bundle)
            if args.ready_file:
                with open(args.ready_file, "w") as ready:
                    ready.write("ready\n")
            return app

    Application().run()


def create_app(bundle_name: str) -> Any:
    import numpy as np
    import orjson
    import torch
    from flask import Flask, Response, request

    bundle = load_bundle(bundle_name)  # in the worker: one torch thread there
    shape = tuple(bundle.input_shape)
    app = Flask("plain")

    @app.post("/predict")
    def predict() -> Response:
        try:
            batch = np.asarray(orjson.loads(request.get_data())["inputs"], dtype=np.float32)
        except (ValueError, KeyError, TypeError):
            return Response(b'{"error":"bad request"}', 400, mimetype="application/json")
        if batch.shape[1:] != shape:
            return Response(b'{"error":"bad shape"}', 400, mimetype="application/json")
        with torch.inference_mode():
            out = bundle.postprocess(bundle.predict(bundle.preprocess(batch)))
        body = orjson.dumps({"predictions": [
            {"label": p.label, "probabilities": p.probabilities} for p in out]})
        return Response(body, 200, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', 200, mimetype="application/json")

    return app


if __name__ == "__main__":
    main()
