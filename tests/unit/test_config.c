/* Configuration: defaults valid, load order (file < env < argv), original variable names,
 * bounds and type errors naming the option, cross-field checks, redaction, --help coverage.
 * Includes config.c to reach the loader with an injected environment. */
#include "../../common/config.c"
#include <unistd.h>
#include "tap.h"

static const char *fake_env[32][2];
static int nfake;

static const char *test_getenv(const char *name)
{
    for (int i = 0; i < nfake; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return fake_env[i][1];
    return NULL;
}

static void env(const char *name, const char *value)
{
    fake_env[nfake][0] = name;
    fake_env[nfake][1] = value;
    nfake++;
}

static enum config_result load(struct config *c, char *err, int argc, ...)
{
    char *argv[16] = {"aetherisd"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    bool check;
    return config_load_env(c, argc, argv, test_getenv, &check, err, 256);
}

int main(void)
{
    struct config c;
    char err[256] = "";
    is_int(load(&c, err, 1), CONFIG_OK, "defaults are valid (%s)", err);
    ok(c.window_size == 100 && c.min_points == 5 && c.z_threshold == 2.5 &&
           c.amount_scale == 5000 && c.immediate_batch_size == 5 && c.batch_size == 10 &&
           c.immediate_batch_max_wait_ms == 150 && c.batch_max_wait_ms == 300,
       "documented defaults");
    ok(strcmp(c.mqtt_url, "tcp://127.0.0.1:1883") == 0 && c.http_port == 8080 &&
           strcmp(c.sqlite_path, "var/aetheris.db") == 0 && !c.fail_fast_healthcheck,
       "default addresses of DESIGN.md 6");

    /* env: AETHERIS_ names and the original names */
    env("IMMEDIATE_BATCH_SIZE", "7");
    env("BATCH_MAX_WAIT_MS", "450");
    env("FAIL_FAST_HEALTHCHECK", "true");
    env("MONGODB_TOOL_AUDIT_COLLECTION", "audit2");
    env("AETHERIS_WINDOW_SIZE", "50");
    env("MQTT_BROKER", "broker.local");
    env("MQTT_PORT", "1999");
    is_int(load(&c, err, 1), CONFIG_OK, "environment loads (%s)", err);
    ok(c.immediate_batch_size == 7 && c.batch_max_wait_ms == 450 && c.fail_fast_healthcheck &&
           strcmp(c.mongodb_tool_audit_collection, "audit2") == 0 && c.window_size == 50,
       "original and AETHERIS_ variable names apply");
    ok(strcmp(c.mqtt_url, "tcp://broker.local:1999") == 0, "MQTT_BROKER + MQTT_PORT build the URL");

    /* file < env < argv */
    char path[] = "/tmp/aetheris-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "# comment\n\nwindow_size = 60\nhttp_port=9000\nnode_id = from-file\n";
    ok(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "config file written");
    close(fd);
    is_int(load(&c, err, 4, "--config", path, "--http-port=9100"), CONFIG_OK, "file + argv");
    ok(c.window_size == 50, "environment beats the file (window_size 50)");
    ok(c.http_port == 9100, "command line beats the file (http_port 9100)");
    ok(strcmp(c.node_id, "from-file") == 0, "file beats defaults (node_id)");
    is_int(load(&c, err, 3, "--window-size", "70"), CONFIG_OK, "--name value form");
    is_int(c.window_size, 70, "command line beats the environment");
    nfake = 0;

    /* errors name the option */
    struct {
        const char *arg, *needle;
    } bad[] = {
        {"--window-size=1", "window_size"},
        {"--window-size=12x", "window_size"},
        {"--http-port=70000", "http_port"},
        {"--z-threshold=nan", "z_threshold"},
        {"--z-threshold=inf", "z_threshold"},
        {"--mqtt-qos=2", "mqtt_qos"},
        {"--fail-fast-healthcheck=maybe", "fail_fast_healthcheck"},
        {"--log-level=loud", "log_level"},
        {"--agent-backend=gpt", "agent_backend"},
        {"--no-such-option=1", "no-such-option"},
        {"--min-points=200", "min_points"},
        {"--analyst-review-z=9", "analyst_review_z"},
        {"--mqtt-url=http://x", "mqtt_url"},
        {"--redis-url=localhost", "redis_url"},
        {"--edge-workers=0", "edge_workers"},
        {"--immediate-batch-size=", "immediate_batch_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        enum config_result r = load(&c, err, 2, bad[i].arg);
        ok(r == CONFIG_ERROR && strstr(err, bad[i].needle) != NULL, "%s rejected: %s", bad[i].arg,
           err);
    }
    env("AETHERIS_DEDUPE_CAPACITY", "0");
    ok(load(&c, err, 1) == CONFIG_ERROR && strstr(err, "AETHERIS_DEDUPE_CAPACITY"),
       "an environment error names the variable: %s", err);
    nfake = 0;
    FILE *f = fopen(path, "w");
    fputs("window_size = 60\nbogus = 1\n", f);
    fclose(f);
    ok(load(&c, err, 3, "--config", path) == CONFIG_ERROR && strstr(err, ":2") &&
           strstr(err, "bogus"),
       "a file error names file:line and the option: %s", err);
    unlink(path);

    /* redaction */
    is_int(load(&c, err, 3, "--redis-url=redis://:s3cret@10.0.0.1:6380/2", "--mqtt-password=pw"),
           CONFIG_OK, "secrets load");
    char *dump = config_dump_redacted(&c);
    ok(strstr(dump, "s3cret") == NULL && strstr(dump, "\"pw\"") == NULL, "dump hides secrets");
    ok(strstr(dump, "redis://:***@10.0.0.1:6380/2") != NULL, "dump keeps the Redis host");
    free(dump);

    /* --help mentions every option */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    config_print_help(mem, "aetherisd");
    fclose(mem);
    int missing = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        char flag[128];
        snprintf(flag, sizeof flag, "--%s", options[i].name);
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;
        missing += strstr(buf, flag) == NULL;
    }
    is_int(missing, 0, "--help lists all %zu options", NOPTIONS);
    ok(strstr(buf, "IMMEDIATE_BATCH_SIZE") && strstr(buf, "FAIL_FAST_HEALTHCHECK"),
       "--help names the original variables");
    free(buf);

    char e2[256];
    is_int(config_set(&c, "batch_size", "0", e2, sizeof e2), ERR_RANGE, "config_set checks bounds");
    return done_testing();
}
