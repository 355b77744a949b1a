"""A small Open Service Broker written in Python with openbrokerapi (Flask), for the acceptance
scenarios: it shows that Kiln's Cloud Controller works with a broker not built on Kiln's own SDK.

One bindable offering, `pystore`, with two plans:
- `standard` provisions at once;
- `slow` sleeps `--slow-seconds` before answering a provision, longer than the platform's broker
  timeout, so the Cloud Controller gives up on it (and should then delete it here: orphan
  mitigation).

Run it with the virtualenv that scripts/install-deps prepares:
    ~/.cache/kiln-venv/bin/python broker.py --username U --password P [--port 0]
It prints `python-broker listening on http://127.0.0.1:<port>` once it accepts requests, then one
JSON object per line on standard output for every request and every operation it performs (what
the scenarios assert on). It exits when its standard input reaches end of file, so it never
outlives the test that started it.
"""

import argparse
import json
import logging
import os
import secrets
import sys
import threading
import time
import uuid

from flask import Flask, request
from openbrokerapi import api, errors
from openbrokerapi.catalog import ServicePlan
from openbrokerapi.service_broker import (
    Binding,
    DeprovisionServiceSpec,
    ProvisionedServiceSpec,
    Service,
    ServiceBroker,
    UnbindSpec,
)
from werkzeug.serving import make_server

SERVICE_NAME = "pystore"
SERVICE_DESCRIPTION = "A key-value store served by a Python broker"

_output_lock = threading.Lock()


def emit(event, **fields):
    """Writes one event as a JSON line on stdout (flushed: the harness reads it live)."""
    fields["event"] = event
    line = json.dumps(fields, sort_keys=True)
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class KeyValueBroker(ServiceBroker):
    """Keeps its instances and bindings in memory; the catalog ids are fresh per process so that
    several copies can be registered with one Cloud Controller at the same time."""

    def __init__(self, slow_seconds):
        self.slow_seconds = slow_seconds
        self.service_id = str(uuid.uuid4())
        self.plan_ids = {"standard": str(uuid.uuid4()), "slow": str(uuid.uuid4())}
        self.lock = threading.Lock()
        self.instances = {}  # instance id -> plan name
        self.provisioning = set()  # instance ids whose provision is still running
        self.cancelled = set()  # instance ids deleted while their provision was running
        self.bindings = {}  # (instance id, binding id) -> credentials

    def plan_name(self, plan_id):
        for name, known in self.plan_ids.items():
            if known == plan_id:
                return name
        raise errors.ErrBadRequest(f"unknown plan {plan_id}")

    def catalog(self):
        plans = [
            ServicePlan(
                id=self.plan_ids["standard"],
                name="standard",
                description="Provisioned at once",
                free=True,
            ),
            ServicePlan(
                id=self.plan_ids["slow"],
                name="slow",
                description=f"Takes {self.slow_seconds:g} s to provision",
                free=True,
            ),
        ]
        return Service(
            id=self.service_id,
            name=SERVICE_NAME,
            description=SERVICE_DESCRIPTION,
            bindable=True,
            plans=plans,
            tags=["python", "key-value"],
        )

    def provision(self, instance_id, details, async_allowed, **kwargs):
        plan = self.plan_name(details.plan_id)
        emit("provision", instance_id=instance_id, plan=plan)
        with self.lock:
            if instance_id in self.instances or instance_id in self.provisioning:
                raise errors.ErrInstanceAlreadyExists()
            self.provisioning.add(instance_id)
        if plan == "slow":
            time.sleep(self.slow_seconds)
        with self.lock:
            self.provisioning.discard(instance_id)
            if instance_id in self.cancelled:
                # Deleted while we slept (the platform gave up and cleaned up): keep nothing.
                self.cancelled.discard(instance_id)
                emit("provision-abandoned", instance_id=instance_id, plan=plan)
                raise errors.ServiceException("deleted while provisioning")
            self.instances[instance_id] = plan
        emit("provisioned", instance_id=instance_id, plan=plan)
        return ProvisionedServiceSpec()

    def deprovision(self, instance_id, details, async_allowed, **kwargs):
        with self.lock:
            if instance_id in self.provisioning:
                self.cancelled.add(instance_id)
                outcome = "cancelled"
            elif self.instances.pop(instance_id, None) is not None:
                outcome = "deleted"
            else:
                outcome = "gone"
            for key in [key for key in self.bindings if key[0] == instance_id]:
                del self.bindings[key]
        emit("deprovision", instance_id=instance_id, outcome=outcome)
        if outcome == "gone":
            raise errors.ErrInstanceDoesNotExist()
        return DeprovisionServiceSpec(is_async=False)

    def bind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        with self.lock:
            plan = self.instances.get(instance_id)
            if plan is None:
                raise errors.ErrBadRequest(f"no instance {instance_id}")
            if (instance_id, binding_id) in self.bindings:
                raise errors.ErrBindingAlreadyExists()
            username = "u" + binding_id.replace("-", "")[:12]
            password = secrets.token_hex(12)
            credentials = {
                "uri": f"kv://{username}:{password}@127.0.0.1:6380/{instance_id}",
                "username": username,
                "password": password,
                "plan": plan,
                "served_by": "openbrokerapi",
            }
            self.bindings[(instance_id, binding_id)] = credentials
        app_guid = details.bind_resource.app_guid if details.bind_resource else None
        emit(
            "bind",
            instance_id=instance_id,
            binding_id=binding_id,
            app_guid=app_guid,
            credentials=credentials,
        )
        return Binding(credentials=credentials)

    def unbind(self, instance_id, binding_id, details, async_allowed, **kwargs):
        with self.lock:
            known = self.bindings.pop((instance_id, binding_id), None) is not None
        emit("unbind", instance_id=instance_id, binding_id=binding_id, known=known)
        if not known:
            raise errors.ErrBindingDoesNotExist()
        return UnbindSpec(is_async=False)


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser(description="pystore: an OSB broker on openbrokerapi")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--slow-seconds", type=float, default=15.0)
    args = parser.parse_args()

    # Flask's and werkzeug's own logging goes to stderr; stdout carries only our events.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    broker = KeyValueBroker(args.slow_seconds)
    app = Flask("pystore")

    @app.before_request
    def record_request():
        emit("request", method=request.method, path=request.path, query=request.args.to_dict())

    app.register_blueprint(
        api.get_blueprint(
            broker,
            api.BrokerCredentials(args.username, args.password),
            logging.getLogger("pystore"),
        )
    )
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"python-broker listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
