#!/usr/bin/env bash
# Make sure the machine's PostgreSQL (5432) and RabbitMQ (5672) answer; start them if they have stopped.
# Tests of those paths talk to these real servers (and fail in CI when they are unreachable).
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "starting RabbitMQ" >&2
  rabbitmq-server -detached || true
  for _ in $(seq 1 30); do port_open 5672 && break; sleep 1; done
fi
port_open 5432 || echo "warning: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
port_open 5672 || echo "warning: RabbitMQ is not reachable on 127.0.0.1:5672" >&2
exit 0
