# Platform Jupyter server settings (replace the science image's).
c = get_config()  # noqa: F821
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.open_browser = False
c.ServerApp.base_url = "/"
c.ServerApp.allow_origin = "*"
