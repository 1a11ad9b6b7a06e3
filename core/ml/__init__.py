"""Plain-Python image and model code shared by the domain apps. Never imports Django."""
