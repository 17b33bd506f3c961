"""The tutorial's two routes, unchanged for its users, over the tutorial's Predict RPC."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from classify import classify_pb2 as tutorial_pb
from http_gateway.backends import RpcBackend
from http_gateway.calls import rpc_extra
from http_gateway.rpc_routes import call_backend, error_responses, message_to_json
from service.errors import InvalidArgument

PREDICT = tutorial_pb.DESCRIPTOR.services_by_name["Classifier"].methods_by_name["Predict"]
TAG = "tutorial (compatibility)"


class B64ImageRequest(BaseModel):
    """The tutorial's JSON body; not a proto message, so declared here."""

    image_base64: str
    topk: int = 5


def add_tutorial_routes(app: FastAPI, backend: RpcBackend, timeout: float) -> None:
    async def predict(request: Request, image: bytes, topk: int) -> JSONResponse:
        try:
            message = tutorial_pb.ImageRequest(image=image, topk=topk)
        except ValueError:  # topk outside int32
            raise InvalidArgument(f"topk must be a 32-bit integer; got {topk}") from None
        response = await call_backend(request, backend, PREDICT, message, timeout)
        # The tutorial's shape {"topk": [{"label", "prob"}]} is PredictionResponse's JSON.
        return JSONResponse(message_to_json(response, proto_names=True))

    @app.post(
        "/predict/file", tags=[TAG], summary="classify an uploaded image (tutorial route)",
        responses=error_responses(), openapi_extra=rpc_extra(PREDICT),
    )
    async def predict_file(request: Request, file: Annotated[UploadFile, File()], topk: int = 5) -> JSONResponse:
        return await predict(request, await file.read(), topk)

    @app.post(
        "/predict/b64", tags=[TAG], summary="classify a base64 image (tutorial route)",
        responses=error_responses(), openapi_extra=rpc_extra(PREDICT),
    )
    async def predict_b64(request: Request, req: B64ImageRequest) -> JSONResponse:
        try:
            image = base64.b64decode(req.image_base64, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII characters
            raise InvalidArgument("image_base64 is not valid base64") from None
        return await predict(request, image, req.topk)
