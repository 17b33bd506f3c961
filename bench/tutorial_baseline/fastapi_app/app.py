# ruff: noqa  (the tutorial's code as written: its style is part of the copy, not ours to fix)
# Measurement baseline, copied unchanged from the tutorial's fastapi_app/app.py. NOT part of
# the service; never deploy it (see ../README.md). Start it with uvicorn (the port comes from
# TUTORIAL_HTTP_PORT on the command line there).
from fastapi import FastAPI, UploadFile, File
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from infer import predict
from PIL import Image
import base64, io

app = FastAPI(title="ResNet18 Inference Service")


class B64ImageRequest(BaseModel):
    image_base64: str
    topk: int = 5


@app.post("/predict/file")
async def predict_file(file: UploadFile = File(...), topk: int = 5):
    img = Image.open(file.file).convert("RGB")
    res = predict(img, topk)
    return JSONResponse({"topk": [{"label": l, "prob": p} for l, p in res]})


@app.post("/predict/b64")
async def predict_b64(req: B64ImageRequest):
    img = Image.open(io.BytesIO(base64.b64decode(req.image_base64))).convert("RGB")
    res = predict(img, req.topk)
    return JSONResponse({"topk": [{"label": l, "prob": p} for l, p in res]})
