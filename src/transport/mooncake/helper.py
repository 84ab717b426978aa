"""linkcal's Mooncake Transfer Engine helper: one end of a flow, started by a linkcal agent.

recv HOST BYTES: starts an engine on HOST (P2P handshake, TCP protocol), registers a DRAM
  buffer of BYTES and prints {"session": "HOST:PORT", "addr": ADDR}; then waits for a line
  on stdin (or its end) and exits.
send HOST BYTES BLOCK SESSION ADDR: starts an engine on HOST, registers a DRAM buffer of BYTES
  and prints {"ready": true}; then, per stdin line {"bytes": N}, writes N bytes to the
  receiver's buffer as N / BLOCK slices of BLOCK bytes (one per KV block, as SGLang's and
  vLLM's Mooncake connectors post them) with batch_transfer_sync_write, and prints
  {"time_s": T} (T: from the call to its return, perf_counter) or {"error": "..."}.
  A line "quit" or the end of stdin ends it.
Every message is one JSON line on stdout; Mooncake logs to stderr.
"""
import ctypes
import json
import mmap
import sys
import time

# batch_transfer_sync_write takes at most this many slices per call (the engine's batch size).
MAX_SLICES = 1024


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def engine(host, nbytes):
    from mooncake.engine import TransferEngine

    e = TransferEngine()
    rc = e.initialize(host, "P2PHANDSHAKE", "tcp", "")
    if rc != 0:
        raise RuntimeError(f"TransferEngine.initialize({host}, P2PHANDSHAKE, tcp) returned {rc}")
    # Anonymous mapping: page-aligned and zero-filled, as an engine's pinned KV pool is.
    buf = mmap.mmap(-1, max(nbytes, 1))
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    rc = e.register_memory(addr, max(nbytes, 1))
    if rc != 0:
        raise RuntimeError(f"register_memory of {nbytes} B returned {rc}")
    return e, buf, addr


def recv(host, nbytes):
    e, buf, addr = engine(host, nbytes)
    say({"session": f"{host}:{e.get_rpc_port()}", "addr": addr})
    sys.stdin.readline()
    e.unregister_memory(addr)


def send(host, nbytes, block, session, remote):
    e, buf, addr = engine(host, nbytes)
    say({"ready": True})
    while True:
        line = sys.stdin.readline().strip()
        if not line or line == "quit":
            break
        n = int(json.loads(line)["bytes"])
        if n <= 0 or n > nbytes or n % block:
            say({"error": f"{n} B is not a whole number of {block} B blocks within the {nbytes} B buffer"})
            continue
        offs = list(range(0, n, block))
        t = time.perf_counter()
        rc = 0
        for k in range(0, len(offs), MAX_SLICES):
            part = offs[k : k + MAX_SLICES]
            rc = e.batch_transfer_sync_write(session, [addr + o for o in part], [remote + o for o in part], [block] * len(part))
            if rc != 0:
                break
        dt = time.perf_counter() - t
        say({"time_s": dt} if rc == 0 else {"error": f"batch_transfer_sync_write to {session} returned {rc}"})
    e.unregister_memory(addr)


def main(argv):
    try:
        if argv[0] == "recv":
            recv(argv[1], int(argv[2]))
        elif argv[0] == "send":
            send(argv[1], int(argv[2]), int(argv[3]), argv[4], int(argv[5]))
        else:
            say({"error": f"unknown command {argv[0]}"})
            return 2
    except Exception as exc:  # reported to the agent, which names it in the flow's error
        say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
