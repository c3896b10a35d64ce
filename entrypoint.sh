#!/usr/bin/env bash
# Waits (bounded) for Redis and PostgreSQL, where configured, to accept
# connections, then execs ratesd with the given arguments. ratesd itself survives either being down,
# so a timeout only warns: the service then starts and reports unreadiness
# on /health/ready until they come.
set -euo pipefail

# host and port of a URL such as redis://:pw@redis:6379/0 or
# postgres://user:pw@postgres:5432/rates, with a default port.
host_port() {
  local rest=${1#*://}
  rest=${rest##*@}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  local host=${rest%:*} port=${rest##*:}
  if [ "$host" = "$rest" ]; then port=$2; fi
  printf '%s %s\n' "${host:-127.0.0.1}" "$port"
}

wait_for() {
  local name=$1 host=$2 port=$3
  local deadline=$((SECONDS + ${RATES_WAIT_SECONDS:-60}))
  until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      echo "entrypoint: $name at $host:$port not reachable after ${RATES_WAIT_SECONDS:-60}s; starting anyway" >&2
      return 0
    fi
    sleep 1
  done
  echo "entrypoint: $name at $host:$port is up" >&2
}

# Unset: the embedded engine, nothing to wait for.
if [ -n "${RATES_REDIS_URL:-}" ]; then
  # A cluster's seed list: the first seed is enough to wait for.
  read -r host port < <(host_port "${RATES_REDIS_URL%%,*}" 6379)
  wait_for redis "$host" "$port"
fi

# Unset or off: no archive.
db=${RATES_DATABASE_URL:-off}
if [ "${db,,}" != "off" ]; then
  read -r host port < <(host_port "$db" 5432)
  wait_for postgres "$host" "$port"
fi

exec "${RATESD_BIN:-/usr/local/bin/ratesd}" "$@"
