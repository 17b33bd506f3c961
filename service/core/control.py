"""Model control: loading and unloading the model repository's versions while the engine serves.

The framework-neutral API, shared by every protocol (classify.v1's
LoadModel / UnloadModel / ListModels, the Open Inference Protocol's repository
extension):

- ``await control.load(name, version="")``: load every version found in
  ``DIR/name/`` (or only ``version``), unload versions whose folder is gone, and
  return once done; raises FailedPrecondition with the reason when a version
  fails (it is then FAILED in the index and the versions already loaded keep
  serving), NotFound when the model has no folder.
- ``await control.unload(name, version="")``: retire every version (or one);
  requests already admitted finish on it, later ones get NOT_FOUND.
- ``control.index()``: ``VersionStatus(name, version, state, reason,
  weights_sha256)`` for every known version (READY, LOADING, UNLOADING, FAILED).
- ``lifecycle.lease(name, version)`` (also ``engine.lease``): a context manager that resolves a request's
  model and version (empty version: the current one, the highest READY) and
  holds it until the block ends, so a swap or an unload never pulls it away.

How a version loads: its model.toml is checked, the weights are hashed and
loaded with a strict state dict and the class count checked against the
labels, on a thread that exits afterwards (core/threads.py: it leaves no OpenMP
team behind); it is warmed up through the shared inference thread while the
other versions keep serving; then it is published, becoming current in one
step if it is the highest READY version. One load or unload runs at a time.

Modes (``--model-control``): ``none`` loads the repository at start-up and
refuses control calls; ``explicit`` takes load / unload calls; ``poll``
rescans the repository every ``--repository-poll-s`` and refuses control
calls (the folders are the control).
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum
from pathlib import Path

from service.core import repository
from service.core.lifecycle import ModelLifecycle
from service.core.models import BackendOptions, load_model
from service.core.registry import ModelRegistry, ServedVersion, VersionState, VersionStatus, version_key
from service.core.threads import run_on_exiting_thread
from service.errors import FailedPrecondition, NotFound, ServiceError, StartupError, Unavailable
from service.metrics import MODEL_LOAD_SECONDS, MODEL_LOADS

logger = logging.getLogger(__name__)


UNLOADED_REASON = "in the model repository, not loaded"


class ControlMode(StrEnum):
    """How models change while the service runs."""

    NONE = "none"
    EXPLICIT = "explicit"
    POLL = "poll"


class ModelControl:
    """Loads and unloads versions of the repository at ``root`` into ``lifecycle``'s registry."""

    def __init__(
        self,
        lifecycle: ModelLifecycle,
        root: Path | None,
        mode: ControlMode,
        *,
        backend_options: BackendOptions,
        default_backend: str = "torch",
    ) -> None:
        self._lifecycle = lifecycle
        self._registry = lifecycle.registry
        self._root = root
        self._mode = mode
        self._options = backend_options
        self._default_backend = default_backend
        self._lock = asyncio.Lock()

    @property
    def mode(self) -> ControlMode:
        return self._mode

    def index(self) -> list[VersionStatus]:
        """Every version of every model: those the registry holds, with their state, and every other
        version folder of the repository as UNLOADED (unloaded, or not loaded yet), so clients see what
        there is to load. Models in their first-seen order, versions in order."""
        held = self._registry.index()
        if self._root is None:
            return held
        known = {(status.name, status.version) for status in held}
        try:
            names = repository.model_names(self._root)
        except StartupError:  # the repository folder is gone: what is held is still served
            return held
        absent = [
            VersionStatus(folder.name, str(folder.version), VersionState.UNLOADED, UNLOADED_REASON)
            for name in names
            for folder in repository.version_folders(self._root, name)
            if (name, str(folder.version)) not in known
        ]
        order = {name: i for i, name in enumerate(dict.fromkeys([s.name for s in held] + names))}
        return sorted(held + absent, key=lambda s: (order[s.name], version_key(s.version)))

    def names(self) -> list[str]:
        """Every model the registry holds a version of, then the repository's others."""
        return list(dict.fromkeys(status.name for status in self.index()))

    # -- start-up -------------------------------------------------------

    def load_repository(self) -> list[VersionStatus]:
        """Load every version of every model (blocking; call it on a thread that exits). Returns the failures.

        With ``--model-control none`` a failure is a StartupError: the service
        would otherwise run without a model it was told to serve.
        """
        if self._root is None:
            return []
        failures = []
        for name in repository.model_names(self._root):
            for folder in repository.version_folders(self._root, name):
                failure = self._load_blocking(folder)
                if failure is not None:
                    failures.append(failure)
        if failures and self._mode is ControlMode.NONE:
            raise StartupError("; ".join(f"{f.name} version {f.version}: {f.reason}" for f in failures))
        return failures

    # -- control calls --------------------------------------------------

    async def load(self, name: str, version: str = "") -> None:
        """Load model ``name`` (every version in its folder, or ``version``); raise if any version failed."""
        self._check_control()
        assert self._root is not None
        if not name:
            raise FailedPrecondition("a model name is required")
        if not repository.MODEL_NAME.match(name) or not (self._root / name).is_dir():
            raise NotFound(f"model {name!r} is not in the model repository {self._root}")
        if name in self._registry.names() and not self._registry.in_repository(name):
            raise FailedPrecondition(f"model {name!r} was given with --model, not by the model repository; it cannot be loaded")
        async with self._lock:
            failures = await self._sync(name, version, retry_failed=True)
        if failures:
            raise FailedPrecondition("; ".join(f"model {f.name} version {f.version} failed to load: {f.reason}" for f in failures))

    async def unload(self, name: str, version: str = "") -> list[str]:
        """Retire every version of ``name`` (or ``version``); in-flight requests finish first. Returns the versions."""
        self._check_control()
        if name not in self._registry.names():
            raise NotFound(f"model {name!r} is not loaded")
        if not self._registry.in_repository(name):
            raise FailedPrecondition(f"model {name!r} was given with --model, not by the model repository; it cannot be unloaded")
        async with self._lock:
            if version and self._registry.fingerprint(name, version) is None:
                raise NotFound(f"model {name!r} has no version {version!r}")
            retired = self._registry.retire(name, version or None)
        logger.info("unloaded model %s versions %s", name, ", ".join(retired))
        return retired

    async def poll(self) -> None:
        """One rescan: load new (or changed FAILED) versions, unload those whose folder is gone."""
        assert self._root is not None
        async with self._lock:
            try:
                on_disk = repository.model_names(self._root)
            except StartupError as error:
                logger.error("cannot scan the model repository: %s", error)
                return
            for name in sorted(set(on_disk) | {n for n in self._registry.names() if self._registry.in_repository(n)}):
                if name in on_disk:
                    try:
                        await self._sync(name, "", retry_failed=False)
                    except ServiceError as error:  # a folder still being set up: try again next time
                        logger.warning("model repository poll: %s", error.message)
                else:
                    logger.info("model folder %s is gone: unloading the model", self._root / name)
                    self._registry.retire(name)

    async def poll_forever(self, interval_s: float) -> None:
        """Rescan every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll()
            except Exception:
                logger.exception("model repository poll failed")

    # -- internals ------------------------------------------------------

    def _check_control(self) -> None:
        if self._root is None:
            raise FailedPrecondition("no model repository is configured: start the server with --model-repository DIR")
        if self._mode is ControlMode.NONE:
            raise FailedPrecondition(
                "model control is off (--model-control none): start the server with --model-control explicit"
            )
        if self._mode is ControlMode.POLL:
            raise FailedPrecondition(
                "the model repository is polled (--model-control poll): add or remove version folders instead"
            )

    async def _sync(self, name: str, version: str, *, retry_failed: bool) -> list[VersionStatus]:
        assert self._root is not None
        folders = {str(f.version): f for f in repository.version_folders(self._root, name)}
        if version:
            if version not in folders:
                raise NotFound(f"model {name!r} has no version folder {self._root / name / version}")
            targets = [version]
        else:
            if not folders:
                raise FailedPrecondition(f"{self._root / name} holds no version folder (1, 2, ...)")
            targets = sorted(folders, key=version_key)
            known = {s.version for s in self._registry.index() if s.name == name}
            for gone in sorted(known - set(folders), key=version_key):
                logger.info("version folder %s is gone: unloading it", self._root / name / gone)
                self._registry.retire(name, gone)
        failures = []
        for number in targets:
            folder = folders[number]
            seen = self._registry.fingerprint(name, number)
            if seen is not None:
                state, fingerprint = seen
                if state is VersionState.READY or state is VersionState.LOADING:
                    continue  # versions are immutable: publish a change as a new version
                if state is VersionState.FAILED and not retry_failed and fingerprint == folder.fingerprint():
                    continue  # poll retries a failed version only once its files change
            failure = await asyncio.wrap_future(run_on_exiting_thread(self._load_blocking, folder))
            if failure is not None:
                failures.append(failure)
        return failures

    def _load_blocking(self, folder: repository.VersionFolder) -> VersionStatus | None:
        """Verify, load, warm up and publish one version (blocking); its failure, if any."""
        name, number, fingerprint = folder.name, str(folder.version), folder.fingerprint()
        if name in self._registry.names() and not self._registry.in_repository(name):
            reason = f"a model named {name!r} was given with --model; rename the folder {folder.path.parent}"
            logger.error("model repository: %s", reason)
            return VersionStatus(name, number, VersionState.FAILED, reason)
        self._registry.begin_loading(name, number, fingerprint)
        started = time.perf_counter()
        try:
            spec = repository.read_spec(folder, self._default_backend)
            served: ServedVersion = self._lifecycle.build_version(load_model(spec, self._options))
        except StartupError as error:
            reason = str(error)
        except Exception:
            logger.exception("loading %s failed", folder.path)
            reason = "internal error while loading; the server log has the details"
        else:
            self._registry.publish(name, number, served, fingerprint)
            MODEL_LOADS.labels(name, "ready").inc()
            MODEL_LOAD_SECONDS.labels(name).observe(time.perf_counter() - started)
            logger.info("loaded model %s version %s in %.2f s", name, number, time.perf_counter() - started)
            return None
        self._registry.fail(name, number, reason, fingerprint)
        MODEL_LOADS.labels(name, "failed").inc()
        return VersionStatus(name, number, VersionState.FAILED, reason)


class ControlRef:
    """Where transports find the model control: unavailable until the engine is loaded."""

    def __init__(self) -> None:
        self._control: ModelControl | None = None

    def set(self, control: ModelControl) -> None:
        self._control = control

    def get(self) -> ModelControl:
        if self._control is None:
            raise Unavailable("the models are still loading; retry shortly")
        return self._control

    def index(self, registry: ModelRegistry) -> list[VersionStatus]:
        """The control's index (repository versions not loaded included); the registry's without model control."""
        return registry.index() if self._control is None else self._control.index()
