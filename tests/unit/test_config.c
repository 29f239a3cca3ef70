/* Configuration: defaults valid, load order (file < env < argv), original variable names,
 * bounds and type errors naming the option, cross-field checks, redaction, --help coverage.
 * Includes config.c to reach the loader with an injected environment. */
#include "../../common/config.c"
#include <fcntl.h>
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

/* Every field of struct config has exactly one option: sorted by offset, the options tile the
 * struct with no overlap and no gap bigger than the alignment padding the next field needs. */
static void test_table_covers_struct(void)
{
    size_t order[NOPTIONS];
    for (size_t i = 0; i < NOPTIONS; i++)
        order[i] = i;
    for (size_t i = 1; i < NOPTIONS; i++) /* insertion sort by offset */
        for (size_t k = i; k > 0 && options[order[k]].offset < options[order[k - 1]].offset; k--) {
            size_t t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    size_t end = 0;
    int bad = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option_def *o = &options[order[i]];
        size_t align = o->type == OPT_INT      ? _Alignof(int)
                       : o->type == OPT_DOUBLE ? _Alignof(double)
                                               : 1;
        if (o->offset < end || o->offset - end >= align) {
            bad++;
            printf("# field gap or overlap before option %s\n", o->name);
        }
        end = o->offset + o->size;
    }
    bad += sizeof(struct config) - end >= _Alignof(struct config);
    is_int(bad, 0, "the option table covers every field of struct config (%zu options)", NOPTIONS);
    int dup = 0;
    for (size_t i = 0; i < NOPTIONS; i++)
        for (size_t k = i + 1; k < NOPTIONS; k++)
            dup += strcmp(options[i].name, options[k].name) == 0;
    is_int(dup, 0, "option names are unique");
}

/* Every default text passes its own option's validation (config_defaults ignores errors). */
static void test_defaults_valid(void)
{
    struct config c;
    char err[256] = "";
    int bad = 0;
    memset(&c, 0, sizeof c);
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (set_option(&c, &options[i], options[i].def, "default", err, sizeof err) != 0) {
            bad++;
            printf("# %s\n", err);
        }
    }
    is_int(bad, 0, "every default passes validation");
}

/* For every numeric option: one below the minimum and one above the maximum are rejected, and
 * the message names the option, the bound and where the value came from. */
static void test_every_bound(void)
{
    struct config c;
    char err[256], arg[256], want[256];
    int bad = 0, checked = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option_def *o = &options[i];
        if (o->type != OPT_INT && o->type != OPT_DOUBLE)
            continue;
        char flag[128];
        snprintf(flag, sizeof flag, "%s", o->name);
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;
        for (int side = 0; side < 2; side++) {
            double v = side == 0 ? o->min - 1 : o->max + 1;
            if (o->type == OPT_INT)
                snprintf(arg, sizeof arg, "--%s=%.0f", flag, v);
            else
                snprintf(arg, sizeof arg, "--%s=%.17g", flag, side == 0 ? v : o->max * 2 + 1);
            snprintf(want, sizeof want, "%s: ", o->name);
            err[0] = '\0';
            enum config_result r = load(&c, err, 2, arg);
            const char *phrase = side == 0 ? "is below the minimum" : "is above the maximum";
            checked++;
            if (r != CONFIG_ERROR || strncmp(err, want, strlen(want)) != 0 ||
                strstr(err, phrase) == NULL || strstr(err, flag) == NULL) {
                bad++;
                printf("# %s -> %s\n", arg, err);
            }
        }
    }
    is_int(bad, 0, "%d out-of-bounds values rejected, each naming option, bound and flag", checked);
    nfake = 0;
    env("AETHERIS_WINDOW_SIZE", "0");
    is_int(load(&c, err, 1), CONFIG_ERROR, "window_size 0 from the environment");
    ok(strcmp(err, "window_size: 0 is below the minimum 2 (env AETHERIS_WINDOW_SIZE)") == 0,
       "message: %s", err);
    nfake = 0;
}

static void test_argv_forms(void)
{
    struct config c;
    char err[256] = "";
    bool check = false;
    char *argv[] = {"aetherisd",
                    "--check-config",
                    "--fail-fast-healthcheck",
                    "--mqtt-clean-session",
                    "off",
                    "--node-id",
                    "n2"};
    nfake = 0;
    is_int(config_load_env(&c, 7, argv, test_getenv, &check, err, sizeof err), CONFIG_OK,
           "flags load (%s)", err);
    ok(check, "--check-config sets check_only");
    ok(c.fail_fast_healthcheck, "a bare boolean flag means true");
    ok(!c.mqtt_clean_session, "--bool-flag off (separate word) sets false");
    ok(strcmp(c.node_id, "n2") == 0, "--name value");
    is_int(load(&c, err, 2, "--config"), CONFIG_ERROR, "--config without FILE is an error");
    ok(strstr(err, "--config") != NULL, "and says so: %s", err);
    is_int(load(&c, err, 3, "--config", "/nonexistent/aetheris.conf"), CONFIG_ERROR,
           "a missing config file is an error");
    ok(strstr(err, "/nonexistent/aetheris.conf") != NULL, "naming the file: %s", err);
    is_int(load(&c, err, 2, "--window-size"), CONFIG_ERROR, "a missing value is an error");
    ok(strstr(err, "window_size") != NULL, "naming the option: %s", err);
    is_int(load(&c, err, 2, "stray"), CONFIG_ERROR, "a positional argument is an error");
    is_int(load(&c, err, 2, "--z-threshold=3.5"), CONFIG_OK, "a double from argv");
    is_near(c.z_threshold, 3.5, 1e-12, "z_threshold 3.5");

    /* --help and --version print to stdout and ask for exit 0; keep TAP output clean */
    fflush(stdout);
    int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    enum config_result rh = load(&c, err, 2, "--help");
    enum config_result rs = load(&c, err, 3, "--window-size=1", "-h");
    enum config_result rv = load(&c, err, 2, "--version");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(devnull);
    is_int(rh, CONFIG_EXIT_0, "--help: exit 0");
    is_int(rs, CONFIG_EXIT_0, "-h wins over an invalid option");
    is_int(rv, CONFIG_EXIT_0, "--version: exit 0");

    struct {
        const char *value;
        bool want;
    } bools[] = {{"1", true},   {"0", false},  {"true", true}, {"FALSE", false},
                 {"yes", true}, {"no", false}, {"On", true},   {"off", false}};
    int wrong = 0;
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        char a[64];
        snprintf(a, sizeof a, "--mqtt-clean-session=%s", bools[i].value);
        wrong += load(&c, err, 2, a) != CONFIG_OK || c.mqtt_clean_session != bools[i].want;
    }
    is_int(wrong, 0, "booleans accept 1/0/true/false/yes/no/on/off in any case");

    /* MQTT_BROKER/MQTT_PORT: defaults, validation, AETHERIS_MQTT_URL wins */
    env("MQTT_PORT", "2883");
    is_int(load(&c, err, 1), CONFIG_OK, "MQTT_PORT alone");
    ok(strcmp(c.mqtt_url, "tcp://127.0.0.1:2883") == 0, "default host: %s", c.mqtt_url);
    env("AETHERIS_MQTT_URL", "tcp://b.example:1884");
    is_int(load(&c, err, 1), CONFIG_OK, "AETHERIS_MQTT_URL set too");
    ok(strcmp(c.mqtt_url, "tcp://b.example:1884") == 0, "AETHERIS_MQTT_URL wins: %s", c.mqtt_url);
    nfake = 0;
    env("AETHERIS_MQTT_URL", "ssl://b.example:8883");
    ok(load(&c, err, 1) == CONFIG_ERROR && strstr(err, "no MQTT over TLS"),
       "ssl:// refused with the reason: %s", err);
    nfake = 0;
    env("AETHERIS_MQTT_URL", "mqtt://b.example:1883");
    ok(load(&c, err, 1) == CONFIG_ERROR && strstr(err, "must start with tcp://"),
       "another scheme refused: %s", err);
    nfake = 0;
    env("MQTT_PORT", "18x3");
    ok(load(&c, err, 1) == CONFIG_ERROR && strstr(err, "MQTT_PORT"), "bad MQTT_PORT: %s", err);
    nfake = 0;
    env("REDIS_URL", "redis://10.1.1.1:6379/1");
    env("AETHERIS_REDIS_URL", "redis://10.2.2.2:6379/2");
    is_int(load(&c, err, 1), CONFIG_OK, "both Redis URL names");
    ok(strcmp(c.redis_url, "redis://10.2.2.2:6379/2") == 0, "the AETHERIS_ name beats the alias");
    nfake = 0;
    env("MONGODB_AUDIT_TTL_DAYS", "12");
    env("EXCEPTIONS_TOPIC", "x/exc");
    env("COMMANDS_TOPIC", "x/cmd");
    is_int(load(&c, err, 1), CONFIG_OK, "more original names");
    ok(c.audit_ttl_days == 12 && strcmp(c.exceptions_topic, "x/exc") == 0 &&
           strcmp(c.commands_topic, "x/cmd") == 0,
       "MONGODB_AUDIT_TTL_DAYS, EXCEPTIONS_TOPIC, COMMANDS_TOPIC apply");
    nfake = 0;

    char longv[CONFIG_STR_MAX + 16];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    char a[sizeof longv + 16];
    snprintf(a, sizeof a, "--node-id=%s", longv);
    ok(load(&c, err, 2, a) == CONFIG_ERROR && strstr(err, "node_id"),
       "a string longer than its field is rejected: %.60s", err);
}

static void test_cross_field(void)
{
    struct config c;
    char err[256];
    struct {
        const char *a, *b, *needle;
    } cases[] = {
        {"--window-size=10", "--min-points=11", "min_points"},
        {"--analyst-block-z=3", "--analyst-review-z=3.5", "analyst_review_z"},
        {"--auditor-block-ratio=2", "--auditor-review-ratio=2.5", "auditor_review_ratio"},
        {"--strategist-block-loss=100", "--strategist-review-loss=101", "strategist_review_loss"},
        {"--cluster-partitions=4", "--mqtt-qos=0", "cluster_partitions"},
        {"--cluster-partitions=4", "--mqtt-clean-session=true", "cluster_partitions"},
        {"--cluster-partitions=4", "--cluster-topic-prefix=a/+/b", "cluster_topic_prefix"},
        {"--cluster-partitions=4", "--cluster-topic-prefix=a/b/", "cluster_topic_prefix"},
        {"--cluster-partitions=4", "--cluster-name=", "cluster_name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        ok(load(&c, err, 3, cases[i].a, cases[i].b) == CONFIG_ERROR &&
               strncmp(err, cases[i].needle, strlen(cases[i].needle)) == 0,
           "cross-field %s %s: %s", cases[i].a, cases[i].b, err);
    }
    is_int(load(&c, err, 3, "--window-size=10", "--min-points=10"), CONFIG_OK,
           "min_points == window_size is allowed");
    is_int(load(&c, err, 3, "--cluster-partitions=0", "--mqtt-qos=0"), CONFIG_OK,
           "QoS 0 is fine for a single instance");
    is_int(load(&c, err, 2, "--cluster-partitions=16"), CONFIG_OK, "16 partitions by default");
}

static void test_redaction(void)
{
    struct config c;
    char err[256];
    struct {
        const char *arg, *secret, *want;
    } cases[] = {
        {"--redis-url=redis://user:pw1@h1:6379/0", "pw1", "\"redis://user:***@h1:6379/0\""},
        {"--redis-url=redis://barepw@h2:6379", "barepw", "\"redis://***@h2:6379\""},
        {"--redis-url=redis://h3:6379/0", NULL, "\"redis://h3:6379/0\""},
        {"--mongodb-uri=mongodb://u:p%40ss@m1:27017/db", "p%40ss",
         "\"mongodb://u:***@m1:27017/db\""},
        {"--mongodb-uri=mongodb://m2:27017", NULL, "\"mongodb_uri\":\"mongodb://m2:27017\""},
        {"--mqtt-password=hunter2", "hunter2", "\"mqtt_password\":\"***\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_int(load(&c, err, 2, cases[i].arg), CONFIG_OK, "%s loads (%s)", cases[i].arg, err);
        char *dump = config_dump_redacted(&c);
        ok((cases[i].secret == NULL || strstr(dump, cases[i].secret) == NULL) &&
               strstr(dump, cases[i].want) != NULL,
           "dump of %s shows %s", cases[i].arg, cases[i].want);
        free(dump);
    }
    is_int(load(&c, err, 1), CONFIG_OK, "defaults");
    char *dump = config_dump_redacted(&c);
    json_error_t jerr;
    json_t *j = json_loads(dump, 0, &jerr);
    ok(j != NULL && json_object_size(j) == NOPTIONS, "the dump is JSON with every option");
    ok(json_is_integer(json_object_get(j, "window_size")) &&
           json_integer_value(json_object_get(j, "window_size")) == 100,
       "ints are JSON numbers");
    ok(json_is_real(json_object_get(j, "z_threshold")) &&
           json_real_value(json_object_get(j, "z_threshold")) == 2.5,
       "doubles are JSON numbers");
    ok(json_is_false(json_object_get(j, "mqtt_clean_session")), "bools are JSON booleans");
    ok(json_is_string(json_object_get(j, "mqtt_password")) &&
           strcmp(json_string_value(json_object_get(j, "mqtt_password")), "") == 0,
       "an empty secret stays empty");
    json_decref(j);
    free(dump);
}

int main(void)
{
    alarm(60);
    test_table_covers_struct();
    test_defaults_valid();
    test_every_bound();
    test_argv_forms();
    test_cross_field();
    test_redaction();

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
    f = fopen(path, "w");
    fwrite("window_size = 60\nhttp_port = 80\0"
           "80\nnode_id = x\n",
           1, 47, f);
    fclose(f);
    ok(load(&c, err, 3, "--config", path) == CONFIG_ERROR && strstr(err, ":2: NUL byte"),
       "a NUL byte is named as such, with file:line: %s", err);
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

    /* webhook retry schedule and SSRF allow-list */
    int sched[CONFIG_RETRIES_MAX];
    is_int(config_retry_schedule("5,300,1800,7200,18000,36000,36000", sched, e2, sizeof e2), 7,
           "the default schedule has 7 retries");
    ok(sched[0] == 5 && sched[6] == 36000, "in order");
    is_int(config_retry_schedule("", sched, e2, sizeof e2), 0, "an empty schedule: no retries");
    static const char *const bad_sched[] = {"0",
                                            "5,",
                                            ",5",
                                            "5,,6",
                                            "-1",
                                            "1.5",
                                            "5 ,6",
                                            "604801",
                                            "x",
                                            "1,2,3,4,5,6,7,8,9,"
                                            "10,11,12,13,14,15,"
                                            "16,17,18,19,20,21"};
    int refused = 0;
    for (size_t i = 0; i < sizeof bad_sched / sizeof bad_sched[0]; i++)
        refused += config_retry_schedule(bad_sched[i], NULL, e2, sizeof e2) == ERR_INVAL &&
                   strstr(e2, "webhook_retry_schedule") != NULL;
    is_int(refused, sizeof bad_sched / sizeof bad_sched[0],
           "malformed schedules are refused, naming the option");
    struct config w;
    config_defaults(&w);
    char *wargv[] = {"aetherisd", "--webhook-allow-cidrs=127.0.0.0/8,::1/128", NULL};
    is_int(config_load_env(&w, 2, wargv, test_getenv, NULL, e2, sizeof e2), CONFIG_OK,
           "an allow-list loads: %s", e2);
    char *wbad[] = {"aetherisd", "--webhook-allow-cidrs=127.0.0.0/33", NULL};
    ok(config_load_env(&w, 2, wbad, test_getenv, NULL, e2, sizeof e2) == CONFIG_ERROR &&
           strstr(e2, "webhook_allow_cidrs") != NULL,
       "a malformed allow-list is refused: %s", e2);
    char *sbad[] = {"aetherisd", "--webhook-retry-schedule=5,x", NULL};
    ok(config_load_env(&w, 2, sbad, test_getenv, NULL, e2, sizeof e2) == CONFIG_ERROR &&
           strstr(e2, "webhook_retry_schedule") != NULL,
       "a malformed schedule is refused at load: %s", e2);
    return done_testing();
}
