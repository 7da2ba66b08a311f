# Shared by the gateway benches (sourced): a scratch directory, free ports, nginx
# configurations, and a mesh-registry with one instance of `app`. Expects `$work` (a scratch
# directory), the array `pids` (processes to stop on exit), `$NGINX` and `$REGISTRY`.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

nginx_conf() { # name, body of the http block, access log
    mkdir -p "$work/$1/logs"
    cat >"$work/$1/nginx.conf" <<EOF2
daemon off;
worker_processes 1;
error_log $work/$1/logs/error.log;
pid $work/$1/nginx.pid;
events { worker_connections 4096; }
http {
    access_log ${3:-off};
    client_body_temp_path $work/$1;
    proxy_temp_path $work/$1;
    fastcgi_temp_path $work/$1;
    uwsgi_temp_path $work/$1;
    scgi_temp_path $work/$1;
    $2
}
EOF2
}

# The registry on port $1, with 127.0.0.1:$2 as the one instance of `app`, renewed while the
# bench runs.
registry_with_app() { # registry port, app port
    MESH_REGISTRY_ADDR=127.0.0.1:$1 MESH_LOG=warn "$REGISTRY" >"$work/registry.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/health" && break
        sleep 0.1
    done
    curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
        -d "{\"id\": \"app-1\", \"host\": \"127.0.0.1\", \"port\": $2, \"renewal_interval\": \"10s\", \"lease_duration\": \"300s\"}" \
        "http://127.0.0.1:$1/v1/services/app/instances"
    (while sleep 10; do
        curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$1/v1/services/app/instances/app-1/heartbeat" || true
    done) &
    pids+=($!)
}
