/* Start-up checks (preflight.h). Each check uses the same client code the pipeline uses (rconn,
 * mqttc, store), so "reachable at start-up" means reachable the way the pipeline will talk. */
#include "preflight.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "err.h"
#include "log.h"
#include "mqttc.h"
#include "rconn.h"

int preflight_mkdirs(const char *path, char *err, size_t errlen)
{
    char tmp[CONFIG_STR_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp) {
        snprintf(err, errlen, "directory path '%s' is empty or too long", path);
        return ERR_INVAL;
    }
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", tmp, strerror(errno));
            return ERR_IO;
        }
        tmp[i] = saved;
    }
    return 0;
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
    char client_id[128];
    snprintf(client_id, sizeof client_id, "%s-preflight", cfg->node_id);
    struct mqttc_options mo = {.url = cfg->mqtt_url,
                               .client_id = client_id,
                               .username = cfg->mqtt_username,
                               .password = cfg->mqtt_password,
                               .clean_session = true,
                               .keepalive_s = cfg->mqtt_keepalive_s};
    struct mqttc *m = mqttc_new(&mo);
    int rv = m ? mqttc_wait_connected(m, cfg->startup_timeout_ms) : ERR_INTERNAL;
    mqttc_free(m, 0);
    if (rv != 0)
        snprintf(err, errlen, "MQTT broker %s is not reachable", cfg->mqtt_url);
    return rv == 0 ? 0 : ERR_CONN;
}

int preflight_check(const struct config *cfg, struct store *store, char *err, size_t errlen)
{
    int rv = check_broker(cfg, err, errlen);
    log_info("preflight.mqtt", "broker %s: %s", cfg->mqtt_url, rv == 0 ? "up" : "down");
    if (rv == 0) {
        rv = check_redis(cfg, err, errlen);
        log_info("preflight.redis", "redis: %s", rv == 0 ? "up" : "down");
    }
    if (rv == 0 && store_ping(store) != 0) {
        snprintf(err, errlen, "the %s store does not answer", store_backend_name(store));
        rv = ERR_CONN;
    }
    return rv == 0 ? 0 : ERR_CONN;
}
