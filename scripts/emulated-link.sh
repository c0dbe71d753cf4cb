#!/usr/bin/env bash
# Two emulated hosts on this machine: network namespaces cb-host0 and cb-host1 joined by a veth
# pair, each end shaped with a token-bucket filter (tc tbf) to RATE. Addresses live only inside
# the namespaces (10.213.7.1 and 10.213.7.2 on cb-veth0 / cb-veth1). CB_NETNS_PREFIX=name (at most
# 9 characters) renames them name-host0/1 and name-veth0/1, so tests and users do not share them.
# A failed `up` removes what it built.
#
#   scripts/emulated-link.sh up 1gbit      # build (replaces an old one)
#   scripts/emulated-link.sh down          # tear down
#   ip netns exec cb-host0 <cmd>           # run as host 0 (MASTER_ADDR=10.213.7.1, GLOO_SOCKET_IFNAME=cb-veth0)
#
# This kernel has no netem, so there is no added delay: the link is rate-shaped only.
# Needs CAP_NET_ADMIN (root) and iproute2.
set -euo pipefail
action=${1:-}
rate=${2:-1gbit}
# burst must hold at least rate / HZ bytes; 256 KiB covers rates up to ~20 Gbit at HZ=1000
burst=${BURST:-256kb}
p=${CB_NETNS_PREFIX:-cb}
if [ ${#p} -gt 9 ] || ! [[ "$p" =~ ^[a-z0-9]+$ ]]; then
  echo "CB_NETNS_PREFIX '$p': use 1-9 lower-case letters or digits (interface names are at most 15)" >&2
  exit 2
fi

down() {
  ip netns del "$p-host0" 2>/dev/null || true
  ip netns del "$p-host1" 2>/dev/null || true
}

case "$action" in
  up)
    down
    trap 'down; echo "emulated link: up failed; removed what was built" >&2' ERR
    ip netns add "$p-host0"
    ip netns add "$p-host1"
    ip link add "$p-veth0" netns "$p-host0" type veth peer name "$p-veth1" netns "$p-host1"
    for i in 0 1; do
      ns=$p-host$i
      ip -n "$ns" addr add "10.213.7.$((i + 1))/24" dev "$p-veth$i"
      ip -n "$ns" link set lo up
      ip -n "$ns" link set "$p-veth$i" mtu "${MTU:-9000}"  # jumbo frames, as on a Spark pair
      ip -n "$ns" link set "$p-veth$i" up
      ip netns exec "$ns" tc qdisc add dev "$p-veth$i" root tbf rate "$rate" burst "$burst" latency 100ms
    done
    for _ in $(seq 50); do  # the veth pair reports "up" a moment after both ends are set up
      [ "$(ip netns exec "$p-host0" cat "/sys/class/net/$p-veth0/operstate")" = up ] \
        && [ "$(ip netns exec "$p-host1" cat "/sys/class/net/$p-veth1/operstate")" = up ] && break
      sleep 0.1
    done
    trap - ERR
    echo "emulated link up: $p-host0 10.213.7.1 <-> $p-host1 10.213.7.2, tbf $rate burst $burst"
    ;;
  down)
    down
    echo "emulated link down"
    ;;
  *)
    echo "usage: $0 up RATE | down" >&2
    exit 2
    ;;
esac
