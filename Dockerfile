# Shoal: one image for the CLI, the Celery workers, beat and the webhook receiver.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 SHOAL_DATA_DIR=/data
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg62-turbo libpng16-16 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# CPU wheels of torch keep the image small; a GPU host can swap the index URL
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY catalog catalog
COPY crawler crawler
COPY labeling labeling
COPY pipeline pipeline
COPY trainer trainer
RUN pip install . flower
VOLUME ["/data"]
ENTRYPOINT ["shoal"]
CMD ["--help"]
