"""Tests of the bridges (issue 17): MCP and A2A on both sides of the exchange."""
