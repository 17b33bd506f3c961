"""Translation between the core's results and the generated proto messages."""

from __future__ import annotations

from classify.v1 import classify_pb2 as pb
from service.contract.status import error_status
from service.core.engine import Classification
from service.core.models import ModelInfo
from service.core.registry import VersionState, VersionStatus
from service.errors import ServiceError

_STATES = {
    VersionState.LOADING: pb.ModelVersionStatus.STATE_LOADING,
    VersionState.READY: pb.ModelVersionStatus.STATE_READY,
    VersionState.UNLOADING: pb.ModelVersionStatus.STATE_UNLOADING,
    VersionState.FAILED: pb.ModelVersionStatus.STATE_FAILED,
    VersionState.UNLOADED: pb.ModelVersionStatus.STATE_UNLOADED,
}


def classify_response(result: Classification) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        predictions=[
            pb.Prediction(label=p.label, probability=p.probability, class_index=p.class_index)
            for p in result.predictions
        ],
        model=result.model,
        model_version=result.model_version,
    )



def batch_result(outcome: Classification | ServiceError) -> pb.ClassifyBatchResult:
    if isinstance(outcome, ServiceError):
        return pb.ClassifyBatchResult(error=error_status(outcome))
    return pb.ClassifyBatchResult(response=classify_response(outcome))


def stream_response(request_id: str, outcome: Classification | ServiceError) -> pb.ClassifyStreamResponse:
    if isinstance(outcome, ServiceError):
        return pb.ClassifyStreamResponse(request_id=request_id, error=error_status(outcome))
    return pb.ClassifyStreamResponse(request_id=request_id, response=classify_response(outcome))


def model_info(info: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=info.name,
        architecture=info.architecture,
        weights_sha256=info.weights_sha256,
        version=info.version,
        input_height=info.input_height,
        input_width=info.input_width,
        num_classes=info.num_classes,
        labels=list(info.labels),
        backend=info.backend,
        device=info.device,
        precision=info.precision,
    )


def version_status(status: VersionStatus) -> pb.ModelVersionStatus:
    return pb.ModelVersionStatus(
        version=status.version, state=_STATES[status.state], reason=status.reason, weights_sha256=status.weights_sha256
    )
