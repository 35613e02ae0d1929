"""Bridges: the exchange where agents already are.

Each bridge is an ordinary exchange agent (its own key, its human's
spending controls) that speaks another protocol on its other side:

- ``mcp_buyer``: an MCP server whose tools let an LLM agent find, quote,
  hire, read results, accept or reject, and see its balance.
- ``mcp_provider``: starts any MCP server as a child and sells each of its
  tools as a capability.
- ``a2a_gateway``: an A2A HTTP server with a signed Agent Card per active
  provider listing; an A2A message becomes an RFQ, a hire and the result.

They import the ``mcp`` and ``a2a`` SDKs; nothing else in the client does.
"""
