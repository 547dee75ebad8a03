"""Subcommands of the `tinylm` command line, one module each.

A module here whose name does not start with "_" is a subcommand: it defines
`register(subparsers)`, which adds its parser and sets `run=function(args)
-> exit status` as a default. tinylm/cli.py finds the modules itself, so a
new command is a new file.
"""
