"""Cameras inside the edge agent: the thrown-object service, its events and their evidence.

The agent builds a :class:`CameraBridge` when the site has cameras with a ``params.source``
(a file, an ``rtsp://`` URL, or ``mqtt`` for JPEG frames published on
``gh/{site}/camera/{device_id}/frame``). Alarms go through :meth:`Agent.emit_event` into the
durable outbox like every other event; the evidence image (track drawn on a frame, faces
blurred) stays in ``{data_dir}/evidence`` and is uploaded to the cloud by a background thread
that retries with backoff until the cloud has it, so the dashboard can show it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_profiles.messages import Event
from device_profiles.site import CloudConfig, DeviceConfig, SiteConfig
from edge.backoff import Backoff
from edge.metrics import Metrics

log = logging.getLogger(__name__)

FRAME_CHANNEL = "frame"


def video_cameras(site: SiteConfig) -> list[DeviceConfig]:
    """The site's cameras that have a video source to analyse."""
    return [d for d in site.all_devices() if d.kind == "camera" and d.params.get("source")]


class EvidenceUploader:
    """Uploads evidence JPEGs to the cloud from its own thread, retrying until accepted."""

    def __init__(
        self, cloud: CloudConfig, token: str | None, evidence_dir: Path, metrics: Metrics
    ) -> None:
        self._cloud = cloud
        self._token = token
        self._dir = evidence_dir
        self._metrics = metrics
        self._queue: queue.Queue[str] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-evidence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def submit(self, snapshot: str) -> None:
        try:
            self._queue.put_nowait(snapshot)
        except queue.Full:
            self._metrics.inc("evidence_upload_dropped")
            log.warning("evidence upload queue full: %s stays only at the edge", snapshot)

    def _run(self) -> None:
        import httpx

        from edge.outputs.cloud_summary import (
            SummaryRejected,
            SummaryUnavailable,
            upload_evidence,
        )

        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        backoff = Backoff(self._cloud.retry_initial, self._cloud.retry_max)
        with httpx.Client(
            base_url=self._cloud.url, headers=headers, timeout=self._cloud.timeout,
            verify=self._cloud.ca_file or True,
        ) as client:
            while not self._stop.is_set():
                try:
                    snapshot = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                while not self._stop.is_set():
                    try:
                        upload_evidence(client, self._dir, snapshot)
                        self._metrics.inc("evidence_uploaded")
                        backoff.reset()
                        break
                    except SummaryRejected as exc:
                        self._metrics.inc("evidence_upload_rejected")
                        log.warning("evidence %s refused by the cloud: %s", snapshot, exc)
                        break
                    except SummaryUnavailable as exc:
                        self._metrics.inc("evidence_upload_failures")
                        delay = backoff.next_delay()
                        log.info("evidence upload failed (%s); retrying in %.1fs", exc, delay)
                        self._stop.wait(delay)
                    except Exception:  # keep the uploader alive: count, log, move on
                        self._metrics.inc("evidence_upload_errors")
                        log.exception("evidence upload of %s failed", snapshot)
                        break


class CameraBridge:
    """The camera service of one agent, wired to its outbox and the cloud."""

    def __init__(
        self,
        site: SiteConfig,
        cameras: list[DeviceConfig],
        data_dir: Path,
        emit: Callable[[Event], bool],
        metrics: Metrics,
        token: str | None,
        service_factory: Callable[..., Any] | None = None,
    ) -> None:
        from edge.camera.service import CameraService

        self._emit = emit
        self._metrics = metrics
        self.evidence_dir = data_dir / "evidence"
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        self._uploader = EvidenceUploader(site.cloud, token, self.evidence_dir, metrics)
        factory = service_factory or CameraService
        self.service = factory(
            site.site_id, site.gateway_id, cameras, self.evidence_dir, self._on_alarm
        )

    def start(self) -> None:
        self._uploader.start()
        self.service.start()

    def stop(self) -> None:
        self.service.stop(5.0)
        self._uploader.stop()

    def feed_frame(self, device_id: str, jpeg: bytes, ts: float) -> bool:
        """A JPEG frame from MQTT; False if the device is not an MQTT camera of the site."""
        accepted: bool = self.service.feed_frame(device_id, jpeg, ts)
        return accepted

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.service.stats()
        return stats

    def _on_alarm(self, event: Event) -> None:
        """Called from camera threads: make the alarm durable, then ship its evidence."""
        try:
            self._emit(event)
        except Exception:  # a camera thread must survive a store failure; it is counted
            self._metrics.inc("camera_events_lost")
            log.exception("could not store camera event %s", event.event_id)
            return
        snapshot = event.evidence.get("snapshot")
        if isinstance(snapshot, str) and snapshot:
            self._uploader.submit(snapshot)
