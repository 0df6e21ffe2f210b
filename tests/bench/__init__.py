"""The benchmark behind `scripts/bench`: the bot as a real process against the fakes on loopback.

`run` is the command line; `bot_bench` drives the bot process, `store_bench` the SQLite store alone,
`integrity` checks that every job was settled exactly once, `report` prints the figures beside the targets.
"""
