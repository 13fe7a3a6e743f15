"""An emulator with the modal face whose event loop is kept busy, for tests of the gRPC arrival stamps.

Run as ``python -m tests.busy_grpc_server [--plain]``; prints the emulator's URL
and the modal face's gRPC port on one line once the heap below is built.

Busy as the emulator is while it answers a burst: the loop runs pure Python
20 ms at a time (so its thread wants the GIL back whenever the reader thread
lets it go), and the heap holds 600,000 tracked objects, growing by PER_CREATE for each
create received, up to 1.4 million (the creates in flight: CPython starts a
full collection of it each time its oldest generation has grown by a
quarter, while the requests arrive). ``--plain`` turns off what keeps the arrival stamps exact
(``loadgen.net.heldread``'s reads that keep the GIL, ``loadgen.net.gcpauses``)
so that a test can show what it measures without them.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time

PER_CREATE = 400  # tracked objects the heap grows by per create received (what a create in flight holds)
CREATE = "/modal.client.ModalClient/SandboxCreateV2"


def main() -> int:
    plain = "--plain" in sys.argv
    from loadgen.net import gcpauses, heldread

    if plain:
        heldread.available = False
        gcpauses.keep_pauses_short = lambda: False
    gcpauses.IDLE_S = 600.0  # (the full collection once idle is not under test: the heap's build would start it)
    from loadgen.emulator import settings as S
    from loadgen.emulator.server import Emulator, new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)

    async def run() -> None:
        emulator = Emulator(S.resolve("fast", None, {"create_latency": {"kind": "constant", "ms": 50}}), ("modal",))
        url = await emulator.start(0)
        face = emulator.faces[0]
        await face._started  # the gRPC listener is up (and loadgen.net.gcpauses has had its say)
        heap = [[i] for i in range(600_000)]  # built after the start, as a burst's state is
        gc.collect()
        print(url, face.grpc_port, flush=True)
        while True:
            until = time.perf_counter() + 0.02
            while time.perf_counter() < until:
                pass
            target = min(1_400_000, 600_000 + PER_CREATE * face.rpcs.get(CREATE, 0))
            if len(heap) < target:
                heap.extend([i] for i in range(target - len(heap)))
            await asyncio.sleep(0)

    loop.run_until_complete(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
