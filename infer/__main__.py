from .cli import app

app(prog_name="mnist-gen")
