"""``python -m cluster_service.broker_permissions``: the least RabbitMQ permissions needed.

    python -m cluster_service.broker_permissions   # prints the rabbitmqctl command

RabbitMQ grants a user, per virtual host, three regular expressions over
resource names (queues and exchanges): *configure* (declare, delete), *write*
(publish to an exchange; bind a queue) and *read* (consume from a queue; bind
from an exchange). What the service does, and so what it needs:

* declares the peers' request and results queues (configure), consumes the
  results queues (read) and publishes requests through the default exchange
  (write on ``amq.default``);
* declares the reply fanout exchange (configure), binds its own reply queues
  to it (read on the exchange) and sends others' replies on through it (write);
* declares its own reply queues and auth-event queues, all named
  ``cluster_service.reply.<token>…`` (configure, write for the bind, read);
* declares the auth events exchange and binds to it (configure, read), but
  never publishes to it: only the User Service (or an operator, with
  ``python -m cluster_service.revoke`` under a user that may write there) does.

The patterns follow the configured names (``*_QUEUE``, ``*_EXCHANGE``), so
they are computed here from the settings rather than written out by hand;
docs/operations.md shows them for the defaults.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from dataclasses import dataclass

from dotenv import load_dotenv

from .config import ConfigError, Settings, load_settings
from .rpc.call_ids import REPLY_QUEUE_PREFIX


@dataclass(frozen=True)
class Permissions:
    """The three regular expressions of ``rabbitmqctl set_permissions``."""

    configure: str
    write: str
    read: str


def _any_of(names: list[str], own_queues: bool = True) -> str:
    alternatives = [re.escape(name) for name in names]
    if own_queues:
        alternatives.append(re.escape(REPLY_QUEUE_PREFIX) + ".+")
    return "^(" + "|".join(alternatives) + ")$"


def broker_permissions(settings: Settings) -> Permissions:
    """The permissions the service's broker user needs for ``settings``' names."""
    # Every *_request_queue and *_result_queue setting: a new peer's queues are covered.
    names = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
    requests = [value for name, value in names.items() if name.endswith("_request_queue")]
    results = [value for name, value in names.items() if name.endswith("_result_queue")]
    exchanges = [settings.reply_exchange, settings.auth_events_exchange]
    return Permissions(
        configure=_any_of(requests + results + exchanges),
        write=_any_of(["amq.default", settings.reply_exchange]),
        read=_any_of(results + exchanges),
    )


def set_permissions_command(settings: Settings) -> str:
    """The ``rabbitmqctl set_permissions`` command for ``RABBITMQ_USER`` in ``RABBITMQ_VHOST``."""
    permissions = broker_permissions(settings)
    return shlex.join(["rabbitmqctl", "set_permissions", "-p", settings.rabbitmq_vhost,
                       settings.rabbitmq_user, permissions.configure, permissions.write,
                       permissions.read])


def main() -> int:
    load_dotenv()
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"cluster_service: configuration error: {error}", file=sys.stderr)
        return 2
    print(set_permissions_command(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
