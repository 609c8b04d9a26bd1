"""Thin trigger adapters: turn a trigger's input into plain values, call the core, shape the output."""
