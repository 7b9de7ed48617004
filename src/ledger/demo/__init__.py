"""The demo: realistic scenarios generated from a seed (`generate`) and replayed end to end (`run`)."""
