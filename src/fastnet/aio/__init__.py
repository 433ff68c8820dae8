"""The I/O layer: links and the asyncio event loop driving the C core (one call per wake-up)."""
