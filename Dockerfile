# evalscope-serve image: the official Ray image of our Ray and Python (rayproject/ray:2.60.0-py311, CPU) plus this
# project, installed as a regular (non-editable) package.
#
#   docker build -t evalscope-serve:0.1.0 .
#   docker run --rm -p 9000:9000 evalscope-serve:0.1.0        # standalone: configs/serve.yaml, port 9000
#
# The command is `evalscope-serve run configs/serve.yaml`: Ray's `serve run`, but `docker stop` (SIGTERM) shuts Serve
# down and exits 0, as Ctrl-C does; `serve run` itself answers SIGTERM with a native stack dump and exit status 15.
#
# On Kubernetes, KubeRay replaces the command with its own `ray start` and deploys the app from the RayService's
# serveConfigV2 (deployments/kuberay/rayservice.yaml), where Serve listens on 8000 and metrics are on 8080.
# Standalone, Ray picks its metrics port; to pin it to 8080 (and reach the dashboard on 8265):
#   docker run --rm -p 9000:9000 -p 8265:8265 -p 8080:8080 evalscope-serve:0.1.0 bash -c \
#     "ray start --head --dashboard-host=0.0.0.0 --metrics-export-port=8080 && evalscope-serve run configs/serve.yaml"
#
# No credentials are baked in: model API keys travel per request (`api_key`) and are never stored.
FROM rayproject/ray:2.60.0-py311

LABEL org.opencontainers.image.title="evalscope-serve" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="evalscope eval and load tests behind Ray Serve"

# The base image runs as `ray` (uid 1000, group users/100) with its Python in /home/ray/anaconda3, owned by that user.
# Create the app directory as that user (a directory made by WORKDIR may belong to root, and pip builds in it).
RUN mkdir -p /home/ray/app
WORKDIR /home/ray/app

# Metadata first, then the package and what it serves: configs/serve.yaml (the default command) and the sample
# datasets a request may point at.
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 serve_app/ ./serve_app/
COPY --chown=1000:100 configs/ ./configs/
COPY --chown=1000:100 examples/ ./examples/

# A regular install into the image's Python (not `-e`); drop the build leftovers.
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

USER 1000:100

# 8000: Serve on KubeRay; 9000: Serve from configs/serve.yaml (standalone); 8265: Ray dashboard; 8080: Ray metrics.
EXPOSE 8000 9000 8265 8080

CMD ["evalscope-serve", "run", "configs/serve.yaml"]
