"""The tutorial's two routes, unchanged for its users, over the tutorial's Predict RPC."""

from __future__ import annotations

import base64
import binascii

from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from classify import classify_pb2 as tutorial_pb
from http_gateway.backends import RpcBackend
from http_gateway.rpc_routes import message_to_json
from service.core.errors import InvalidArgument

PREDICT = tutorial_pb.DESCRIPTOR.services_by_name["Classifier"].methods_by_name["Predict"]
TAG = "tutorial (compatibility)"


class B64ImageRequest(BaseModel):
    """The tutorial's JSON body; not a proto message, so declared here."""

    image_base64: str
    topk: int = 5


def add_tutorial_routes(app: FastAPI, backend: RpcBackend, timeout: float) -> None:
    async def predict(image: bytes, topk: int) -> JSONResponse:
        response = await backend.call(PREDICT, tutorial_pb.ImageRequest(image=image, topk=topk), timeout)
        # The tutorial's shape {"topk": [{"label", "prob"}]} is PredictionResponse's JSON.
        return JSONResponse(message_to_json(response, proto_names=True))

    @app.post("/predict/file", tags=[TAG], summary="classify an uploaded image (tutorial route)")
    async def predict_file(file: UploadFile = File(...), topk: int = 5) -> JSONResponse:
        return await predict(await file.read(), topk)

    @app.post("/predict/b64", tags=[TAG], summary="classify a base64 image (tutorial route)")
    async def predict_b64(req: B64ImageRequest) -> JSONResponse:
        try:
            image = base64.b64decode(req.image_base64, validate=True)
        except binascii.Error:
            raise InvalidArgument("image_base64 is not valid base64") from None
        return await predict(image, req.topk)
