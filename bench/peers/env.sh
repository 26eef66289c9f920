# Shared settings of the bench peers (sourced by the scripts in bench/peers and bench/run.sh).
# Loopback high ports, chosen apart from the usual 2525/1143 so a bench run does not collide
# with other local test servers. Override any of them in the environment.
BENCH_NUSERS=${BENCH_NUSERS:-100}
BENCH_DOMAIN=${BENCH_DOMAIN:-example.test}
BENCH_PASSWORD=${BENCH_PASSWORD:-pw}
PF_SMTP_PORT=${PF_SMTP_PORT:-12525}      # Postfix smtpd
DC_IMAP_PORT=${DC_IMAP_PORT:-11143}      # Dovecot IMAP (same store Postfix delivers into)
MADDY_SMTP_PORT=${MADDY_SMTP_PORT:-12526}
MADDY_IMAP_PORT=${MADDY_IMAP_PORT:-11144}
TANDEM_SMTP_PORT=${TANDEM_SMTP_PORT:-12527}
TANDEM_IMAP_PORT=${TANDEM_IMAP_PORT:-11145}
TANDEM_POP3_PORT=${TANDEM_POP3_PORT:-11110}
BENCH_STATE=${BENCH_STATE:-/var/lib/tandem-bench}   # peers' stores, maddy binary
VMAIL=$BENCH_STATE/vmail                            # Dovecot maildirs
DCONF=/etc/dovecot/tandem-bench.conf
DBASE=/run/dovecot-tandem-bench
MADDY=${MADDY:-$BENCH_STATE/bin/maddy}
MADDY_STATE=$BENCH_STATE/maddy
MADDY_TEMPLATE=$BENCH_STATE/maddy.template
MADDY_RUN=/run/maddy-tandem-bench
MADDY_CONF=$BENCH_STATE/maddy.conf
MADDY_LOG=/var/log/maddy-tandem-bench.log
