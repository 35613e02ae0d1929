"""A tiny MCP server over stdio for the bridge tests: ``python -m tests.bridges.tiny_mcp_server``.

Built on the SDK's low-level server, so each tool's schemas and results are
exactly what the tests expect: ``shout`` upper-cases text (text content, no
output schema), ``add`` sums two integers (structured content with an output
schema), and ``fail`` always answers with an ``isError`` result. It writes
one line to stderr when it starts, so tests can see the child's stderr reach
the bridge's log.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

SHOUT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
ADD_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
ADD_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sum": {"type": "integer"}},
    "required": ["sum"],
}
FAIL_INPUT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

TOOLS = [
    types.Tool(name="shout", description="Upper-cases text", input_schema=SHOUT_INPUT_SCHEMA),
    types.Tool(
        name="add",
        description="Adds two integers",
        input_schema=ADD_INPUT_SCHEMA,
        output_schema=ADD_OUTPUT_SCHEMA,
    ),
    types.Tool(name="fail", description="Always fails", input_schema=FAIL_INPUT_SCHEMA),
]


async def list_tools(
    context: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(
    context: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    arguments = params.arguments or {}
    if params.name == "shout":
        text = str(arguments["text"]).upper()
        return types.CallToolResult(content=[types.TextContent(text=text)])
    if params.name == "add":
        total = int(arguments["a"]) + int(arguments["b"])
        return types.CallToolResult(
            content=[types.TextContent(text=str(total))], structured_content={"sum": total}
        )
    message = "fail always fails" if params.name == "fail" else f"unknown tool {params.name}"
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


async def main() -> None:
    server: Server[Any] = Server("tiny", on_list_tools=list_tools, on_call_tool=call_tool)
    print("tiny MCP server: ready on stdio", file=sys.stderr, flush=True)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
