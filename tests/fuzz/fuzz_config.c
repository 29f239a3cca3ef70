/* libFuzzer target: the configuration file parser (common/config.c: load_stream, set_option for
 * every option type, the cross-field validation and the redacted dump). The input is a --config
 * file. Whatever it holds, loading either succeeds or fails with an error naming file:line;
 * a loaded configuration is validated, and its redacted dump must be valid JSON that holds every
 * option. Includes config.c to reach the stream loader. Any violation aborts (a finding). */
#include "../../common/config.c"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: %s: %s\n", what, detail);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fmemopen((void *)data, size, "r");
    if (f == NULL)
        return 0;
    struct config *cfg = malloc(sizeof *cfg);
    config_defaults(cfg);
    char err[512] = "";
    int rv = load_stream(cfg, f, "fuzz.conf", err, sizeof err);
    fclose(f);
    if (rv != 0 && strstr(err, "fuzz.conf:") == NULL)
        fail("a file error that does not name file:line", err);
    if (rv == 0)
        (void)validate(cfg, err, sizeof err);
    char *dump = config_dump_redacted(cfg);
    if (dump == NULL)
        fail("no redacted dump", "");
    json_error_t jerr;
    json_t *parsed = json_loads(dump, 0, &jerr);
    if (!json_is_object(parsed) || json_object_size(parsed) != NOPTIONS)
        fail("the redacted dump is not one JSON object with every option", dump);
    json_decref(parsed);
    free(dump);
    free(cfg);
    return 0;
}
