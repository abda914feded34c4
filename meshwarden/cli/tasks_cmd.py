"""`meshwarden tasks`: submit work, see who holds what (`list`), one task's timeline (`show`),
and `cancel` or `requeue` one. Operator token, on the registry's TLS port."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
from google.protobuf.json_format import MessageToDict

from meshwarden.cli import exit_codes, registry_access
from meshwarden.cli.controls_output import parse_duration, when
from meshwarden.cli.session_render import table
from meshwarden.control_scopes import ScopeError
from meshwarden.registry_client import registry_channel
from meshwarden.v1 import receipts_pb2, tasks_pb2, tasks_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
Action = Callable[[tasks_pb2_grpc.TasksStub, argparse.Namespace, Metadata], Awaitable[int]]
STATES: Final = {
    tasks_pb2.TaskState.Name(value).removeprefix("TASK_STATE_").lower(): value
    for value in tasks_pb2.TaskState.values()
    if value
}


def add_to(commands: Any) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="submit tasks, see who holds them, and cancel or requeue them",
        description="Tasks are leased to one agent instance at a time under a fencing token that only grows. "
        "Operators submit, list, show (the timeline), cancel and requeue them.",
    )
    actions = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser("submit", help="queue a task")
    submit.add_argument("--kind", required=True, help="the task kind: a capability the workers serve")
    submit.add_argument("--workflow", default="", help="the workflow it belongs to")
    submit.add_argument("--input", required=True, metavar="JSON", help="the task's input, a JSON value")
    submit.add_argument("--idempotency-key", default="", metavar="KEY", help="the same key returns the first task")
    submit.add_argument("--max-attempts", type=int, default=0, help="leases before it ends as expired (default 3)")
    submit.add_argument("--lease-ttl", metavar="DURATION", help="how long a lease lasts without heartbeat (10s)")
    listing = actions.add_parser("list", help="tasks by state, kind, workflow and holder, newest first")
    listing.add_argument("--state", choices=sorted(STATES), help="only tasks in this state")
    listing.add_argument("--kind", default="", help="only tasks of this kind")
    listing.add_argument("--workflow", default="", help="only tasks of this workflow")
    listing.add_argument("--holder", default="", help="an instance id or an agent name")
    listing.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    listing.add_argument("--cursor", default="", metavar="CURSOR", help="the next page: the cursor a page printed")
    show = actions.add_parser("show", help="one task and its timeline")
    show.add_argument("id", metavar="ID")
    for name, text in (("cancel", "cancel an unfinished task"), ("requeue", "queue a finished or stuck task again")):
        one = actions.add_parser(name, help=text)
        one.add_argument("id", metavar="ID")
        one.add_argument("--reason", default="", help="why (recorded in the task's timeline)")
    for parser in actions.choices.values():
        parser.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")
        registry_access.add_registry_flags(parser)
    tasks.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    command = f"meshwarden tasks {args.action}"
    if args.action == "submit":
        try:
            json.loads(args.input)
            args.request = _submit_request(args)
        except (ValueError, ScopeError) as exc:
            print(f"{command}: --input must be JSON, --lease-ttl a duration: {exc}", file=sys.stderr)
            return exit_codes.USAGE
    actions: dict[str, Action] = {
        "submit": _submit,
        "list": _list,
        "show": _show,
        "cancel": _cancel,
        "requeue": _requeue,
    }
    return call(command, args, actions[args.action])


def call(command: str, args: argparse.Namespace, action: Action) -> int:
    try:
        access = registry_access.resolve(args, os.environ)
        return asyncio.run(_with_stub(access, args, action))
    except registry_access.AccessError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except grpc.aio.AioRpcError as err:
        return registry_access.report_rpc_error(command, err, args.registry or "the registry")


async def _with_stub(access: registry_access.RegistryAccess, args: argparse.Namespace, action: Action) -> int:
    async with registry_channel(access.address, access.trust) as channel:
        return await action(tasks_pb2_grpc.TasksStub(channel), args, access.metadata())


def _submit_request(args: argparse.Namespace) -> tasks_pb2.SubmitTaskRequest:
    request = tasks_pb2.SubmitTaskRequest(
        kind=args.kind,
        workflow_id=args.workflow,
        input_json=args.input,
        idempotency_key=args.idempotency_key,
        max_attempts=max(args.max_attempts, 0),
    )
    if args.lease_ttl:
        request.lease_ttl.FromMilliseconds(int(parse_duration(args.lease_ttl, "--lease-ttl") * 1000))
    return request


async def _submit(stub: tasks_pb2_grpc.TasksStub, args: argparse.Namespace, metadata: Metadata) -> int:
    reply: tasks_pb2.SubmitTaskResponse = await stub.SubmitTask(args.request, metadata=metadata, timeout=10)
    if args.output == "json":
        print(json.dumps({"task": task_json(reply.task), "created": reply.created}))
    elif reply.created:
        print(f"task {reply.task.id} queued ({reply.task.kind})")
    else:
        print(f"task {reply.task.id} already exists for that idempotency key; it is {_state(reply.task.state)}")
    return exit_codes.OK


async def _list(stub: tasks_pb2_grpc.TasksStub, args: argparse.Namespace, metadata: Metadata) -> int:
    request = tasks_pb2.ListTasksRequest(
        state=STATES.get(args.state or "", 0),  # type: ignore[arg-type]
        kind=args.kind,
        workflow_id=args.workflow,
        holder=args.holder,
        limit=max(args.limit, 0),
        cursor=args.cursor,
    )
    reply: tasks_pb2.ListTasksResponse = await stub.ListTasks(request, metadata=metadata, timeout=10)
    if reply.next_cursor:  # stderr, so the table and the JSON stay what they were
        print(f"more: --cursor {reply.next_cursor}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps([task_json(t) for t in reply.tasks], indent=2))
        return exit_codes.OK
    if not reply.tasks:
        print("no tasks match")
        return exit_codes.OK
    rows = [("ID", "KIND", "STATE", "HOLDER", "TOKEN", "TRIES", "WORKFLOW", "CREATED")]
    for t in reply.tasks:
        tries = f"{t.attempts}/{t.max_attempts}"
        rows.append(
            (t.id, t.kind, _state(t.state), t.holder_instance_id or "-", str(t.fencing_token), tries,
             t.workflow_id or "-", when(t.created_at))
        )  # fmt: skip
    print(table(rows))
    return exit_codes.OK


async def _show(stub: tasks_pb2_grpc.TasksStub, args: argparse.Namespace, metadata: Metadata) -> int:
    reply: tasks_pb2.ShowTaskResponse = await stub.ShowTask(
        tasks_pb2.ShowTaskRequest(task_id=args.id), metadata=metadata, timeout=10
    )
    if args.output == "json":
        transitions = [MessageToDict(t, preserving_proto_field_name=True) for t in reply.transitions]
        calls = [_call_json(r) for r in reply.calls]
        print(
            json.dumps(
                {"task": task_json(reply.task), "transitions": transitions, "calls": calls,
                 "calls_truncated": reply.calls_truncated},
                indent=2,
            )
        )  # fmt: skip
        return exit_codes.OK
    t = reply.task
    print(f"task {t.id} ({t.kind}, workflow {t.workflow_id or '-'}): {_state(t.state)}")
    if t.holder_instance_id:
        print(f"held by {t.holder_instance_id} ({t.holder_agent}) under token {t.fencing_token}")
    print(f"attempts {t.attempts}/{t.max_attempts}, submitted by {t.submitted_by}")
    rows = [("AT", "FROM", "TO", "TOKEN", "BY", "LEASE UNTIL", "REASON")]
    for step in reply.transitions:
        lease = when(step.lease_expires_at) if step.HasField("lease_expires_at") else "-"
        before = _state(step.from_state) if step.from_state else "-"
        rows.append(
            (when(step.at), before, _state(step.to_state), str(step.fencing_token), step.executor, lease, step.reason)
        )
    print(table(rows))
    if t.result_json or t.error:
        print(f"result: {t.result_json or '-'}  error: {t.error or '-'}")
    _print_calls(reply)
    return exit_codes.OK


def _print_calls(reply: tasks_pb2.ShowTaskResponse) -> None:
    """The calls made under each token: what each holder did, a stale holder's refusals too."""
    if not reply.calls:
        print("calls: none recorded (receipts reach the registry seconds after a call)")
        return
    for token in sorted({r.fencing_token for r in reply.calls}):
        print(f"calls under token {token}:")
        rows = [("AT", "KIND", "SIDE", "BY", "CAPABILITY / MODEL / TOOL", "STATUS")]
        for r in (r for r in reply.calls if r.fencing_token == token):
            status = r.status + (f" ({r.error_message[:80]})" if r.error_message else "")
            rows.append(
                (when(r.started_at), r.call_kind or "agent", r.direction, r.sidecar_instance_id, r.capability, status)
            )
        print("\n".join("  " + line for line in table(rows).splitlines()))
    if reply.calls_truncated:
        print("(more calls than shown: the oldest are listed)")


def _call_json(receipt: receipts_pb2.Receipt) -> dict[str, object]:
    return {
        "fencing_token": receipt.fencing_token,
        "started_at": when(receipt.started_at),
        "call_kind": receipt.call_kind or "agent",
        "direction": receipt.direction,
        "sidecar_instance_id": receipt.sidecar_instance_id,
        "call_id": receipt.call_id,
        "capability": receipt.capability,
        "status": receipt.status,
        "error": receipt.error_message,
    }


async def _cancel(stub: tasks_pb2_grpc.TasksStub, args: argparse.Namespace, metadata: Metadata) -> int:
    request = tasks_pb2.OperatorTaskRequest(task_id=args.id, reason=args.reason)
    reply: tasks_pb2.TaskResponse = await stub.CancelTask(request, metadata=metadata, timeout=10)
    return _changed(args, reply.task, "cancelled")


async def _requeue(stub: tasks_pb2_grpc.TasksStub, args: argparse.Namespace, metadata: Metadata) -> int:
    request = tasks_pb2.OperatorTaskRequest(task_id=args.id, reason=args.reason)
    reply: tasks_pb2.TaskResponse = await stub.RequeueTask(request, metadata=metadata, timeout=10)
    return _changed(args, reply.task, "queued again")


def _changed(args: argparse.Namespace, task: tasks_pb2.Task, what: str) -> int:
    if args.output == "json":
        print(json.dumps({"task": task_json(task)}))
    else:
        print(f"task {task.id} {what}")
    return exit_codes.OK


def _state(state: int) -> str:
    return tasks_pb2.TaskState.Name(state).removeprefix("TASK_STATE_").lower()  # type: ignore[arg-type]


def task_json(task: tasks_pb2.Task) -> dict[str, object]:
    data = MessageToDict(task, preserving_proto_field_name=True)
    data["state"] = _state(task.state)
    return data
