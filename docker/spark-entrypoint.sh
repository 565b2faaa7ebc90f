#!/bin/sh
# The Spark image's entrypoint (docker/Dockerfile.spark). Spark on Kubernetes starts its pods
# with a first argument of "driver" or "executor" and describes the rest in SPARK_* variables
# (Spark's "Running on Kubernetes" guide); anything else runs as given (e.g. grmodel --help).
set -eu
case "${1:-}" in
    driver)
        shift
        # The driver runs spark-submit in client mode inside its own pod.
        exec "$SPARK_HOME/bin/spark-submit" \
            --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}" \
            --deploy-mode client "$@"
        ;;
    executor)
        shift
        exec "$JAVA_HOME/bin/java" \
            -Xms"${SPARK_EXECUTOR_MEMORY:-1g}" -Xmx"${SPARK_EXECUTOR_MEMORY:-1g}" \
            -cp "$SPARK_HOME/jars/*" \
            org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
            --driver-url "$SPARK_DRIVER_URL" \
            --executor-id "$SPARK_EXECUTOR_ID" \
            --cores "$SPARK_EXECUTOR_CORES" \
            --app-id "$SPARK_APPLICATION_ID" \
            --hostname "$SPARK_EXECUTOR_POD_IP" \
            --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
            --podName "${SPARK_EXECUTOR_POD_NAME:-}"
        ;;
    *)
        exec "$@"
        ;;
esac
