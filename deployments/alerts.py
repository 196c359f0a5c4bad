"""Alerts as code: a webhook notification block and the automations that use it, on the server PREFECT_API_URL names.

    libs-pipeline deploy-alerts --webhook https://hooks.example.org/libs     (or: python deployments/alerts.py ...)

- ``libs-pipeline-recalibration-failed``: a flow run of the ``recalibrate`` flow ends Failed or Crashed;
- ``libs-pipeline-degraded-champion``: a recalibration kept a champion that no longer meets the promotion policy
  on the new data (event ``libs-pipeline.model.degraded-champion-kept``, emitted by the recalibrate flow).

Both POST JSON ``{"subject": ..., "body": ..., "source": "libs-pipeline"}`` to the webhook through the block
``libs-pipeline-alerts`` (a Prefect CustomWebhookNotificationBlock). Idempotent: running it again overwrites the
block and updates the automations of the same names (never a duplicate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from uuid import UUID

BLOCK_NAME = "libs-pipeline-alerts"
FAILED_AUTOMATION = "libs-pipeline-recalibration-failed"
DEGRADED_AUTOMATION = "libs-pipeline-degraded-champion"
DEGRADED_CHAMPION_KEPT = "libs-pipeline.model.degraded-champion-kept"  # flows/events.py (checked by the tests)

FAILED_SUBJECT = "libs-pipeline: recalibration run {{ flow_run.name }} {{ flow_run.state.name }}"
FAILED_BODY = (
    "Flow run {{ flow_run.name }} of flow {{ flow.name }} ended {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}\nFlow run id: {{ flow_run.id }}"
)
DEGRADED_SUBJECT = "libs-pipeline: degraded champion kept for {{ event.payload.model }}"
DEGRADED_BODY = (
    "Recalibration kept champion {{ event.payload.champion }} of {{ event.payload.model }} although it no longer "
    "meets the promotion policy on the new data: {{ event.payload.reasons | join('; ') }}\n"
    "Decision: {{ event.payload.reason }}"
)


def notification_block(webhook_url: str):
    """The webhook block: POST JSON with the subject and body of the notification."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name="libs-pipeline alerts",
        url=webhook_url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "libs-pipeline"},
        timeout=10,
    )


def automations(block_id: UUID, flow_name: str = "recalibrate") -> list:
    """The two AutomationCores (reactive, one notification per matching event)."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    failed = AutomationCore(
        name=FAILED_AUTOMATION,
        description=f"Notify when a run of the {flow_name!r} flow fails or crashes (deployments/alerts.py)",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=FAILED_SUBJECT, body=FAILED_BODY)],
    )
    degraded = AutomationCore(
        name=DEGRADED_AUTOMATION,
        description="Notify when recalibration keeps a champion that fails the promotion policy on new data",
        enabled=True,
        trigger=EventTrigger(
            expect={DEGRADED_CHAMPION_KEPT},
            match={"prefect.resource.id": "libs-pipeline.model.*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=DEGRADED_SUBJECT, body=DEGRADED_BODY)],
    )
    return [failed, degraded]


def deploy_alerts(webhook_url: str, flow_name: str = "recalibrate") -> dict[str, str]:
    """Create or update the block and the automations; returns {name: id} of the block and each automation."""
    from prefect import get_client

    block_id = notification_block(webhook_url).save(BLOCK_NAME, overwrite=True)
    ids = {BLOCK_NAME: str(block_id)}
    with get_client(sync_client=True) as client:
        for automation in automations(block_id, flow_name):
            existing = client.read_automations_by_name(automation.name)
            if existing:
                keep, *duplicates = sorted(existing, key=lambda a: str(a.id))
                client.update_automation(keep.id, automation)
                for extra in duplicates:  # made by hand or by an older version: one automation per name
                    client.delete_automation(extra.id)
                ids[automation.name] = str(keep.id)
            else:
                ids[automation.name] = str(client.create_automation(automation))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhook", required=True, help="URL that receives the notifications (HTTP POST, JSON)")
    parser.add_argument("--flow", default="recalibrate", help="flow whose failed runs notify (default: recalibrate)")
    args = parser.parse_args(argv)
    for name, ident in deploy_alerts(args.webhook, args.flow).items():
        print(f"{name}: {ident}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
