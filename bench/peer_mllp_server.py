"""Peer for bench/mllp.ts: python-hl7's own asyncio MLLP server (Debian python3-hl7), answering
every message with the ACK python-hl7 builds (create_ack), storing nothing. It shows what a
listener costs on this machine when it does not wait for a durable store.
Run by the benchmark as: /usr/bin/python3 bench/peer_mllp_server.py <port>"""
import asyncio
import sys

import hl7
from hl7.mllp import start_hl7_server


async def answer(reader, writer):
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


async def main(port):
    async with await start_hl7_server(answer, host="127.0.0.1", port=port, encoding="utf-8") as server:
        print("listening", flush=True)
        await server.serve_forever()


asyncio.run(main(int(sys.argv[1])))
