/* Start-up checks (preflight.h). Each check uses the same client code the pipeline uses (rconn,
 * mqttc, store), so "reachable at start-up" means reachable the way the pipeline will talk. */
#include "preflight.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "mqttc.h"
#include "rconn.h"

int preflight_mkdirs(const char *path, char *err, size_t errlen)
{
    int rv = fs_mkdirs(path);
    if (rv != 0)
        snprintf(err, errlen, "cannot create directory %s: %s", path,
                 rv == ERR_IO ? strerror(errno) : "empty or too long");
    return rv;
}

static int check_redis(const struct config *cfg, char *err, size_t errlen)
{
    struct rconn *rc = rconn_new(cfg->redis_url, cfg->startup_timeout_ms, err, errlen);
    if (rc == NULL)
        return ERR_INVAL;
    int rv = rconn_ping(rc);
    rconn_free(rc);
    if (rv != 0)
        snprintf(err, errlen, "Redis is not reachable (redis_url host/port from the config)");
    return rv;
}

static int check_broker(const struct config *cfg, char *err, size_t errlen)
{
    struct mqttc *m = mqttc_new_publisher(cfg, "preflight");
    int rv = m ? mqttc_wait_connected(m, cfg->startup_timeout_ms) : ERR_INTERNAL;
    mqttc_free(m, 0);
    if (rv != 0)
        snprintf(err, errlen, "MQTT broker %s is not reachable", cfg->mqtt_url);
    return rv == 0 ? 0 : ERR_CONN;
}

int preflight_check(const struct config *cfg, struct store *store, char *err, size_t errlen)
{
    char why[3][640] = {"", "", ""};
    int broker = check_broker(cfg, why[0], sizeof why[0]);
    int redis = check_redis(cfg, why[1], sizeof why[1]);
    int st = store_ping(store);
    if (st != 0)
        snprintf(why[2], sizeof why[2], "the %s store does not answer", store_backend_name(store));
    log_info("preflight.dependencies", "mqtt %s: %s, redis: %s, store (%s): %s", cfg->mqtt_url,
             broker == 0 ? "up" : "down", redis == 0 ? "up" : "down", store_backend_name(store),
             st == 0 ? "up" : "down");
    for (int i = 0; i < 3; i++) {
        if (why[i][0] != '\0') {
            snprintf(err, errlen, "%s", why[i]);
            return ERR_CONN;
        }
    }
    return 0;
}
