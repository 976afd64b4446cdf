project = "scalable"
author = "the scalable developers"
extensions: list[str] = []
html_theme = "alabaster"
exclude_patterns = ["_build"]
nitpicky = False
