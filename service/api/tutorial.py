"""The tutorial's classify.Classifier API, kept wire-compatible, over the same core."""

from __future__ import annotations

from classify import classify_pb2 as tutorial_pb
from service.core.engine import EngineRef


class TutorialClassifierApi:
    """classify.Classifier/Predict: the default model, the tutorial's message shapes."""

    def __init__(self, engine: EngineRef) -> None:
        self._engine = engine

    async def Predict(
        self, request: tutorial_pb.ImageRequest, timeout: float | None = None
    ) -> tutorial_pb.PredictionResponse:
        result = await self._engine.get().classify(request.image, request.topk, "", timeout)
        return tutorial_pb.PredictionResponse(
            topk=[tutorial_pb.Prediction(label=p.label, prob=p.probability) for p in result.predictions]
        )
