"""The programs and libraries that talk to the daemon from outside: the CLI
(`blender-session`), blocking and async control clients, the MCP server, and the
CLI's Blender tools (the launcher and the addon zip)."""
