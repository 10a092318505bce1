/*
 * ServiceNow business rule: tell socbridge when one of its tickets changes.
 *
 * Table:      Incident [incident]
 * When:       after, on update (Advanced: checked)
 * Filter:     Correlation ID starts with "socbridge:"
 *             AND (State changes OR Work notes changes OR Additional comments changes)
 * Order:      1000 (after the platform's own rules)
 *
 * It needs the Outbound REST Message "socbridge" (see outbound_rest_message.md) and the
 * system property `socbridge.webhook_secret` holding the shared secret that socbridge reads
 * from `webhook_secret_env`.
 *
 * The body is only a trigger: socbridge reads the ticket back through the Table API before
 * acting, and ignores changes it made itself (its integration user, or notes starting with
 * "[socbridge"). Failures are logged and left to socbridge's sync-in poll, which catches up.
 */
(function executeRule(current, previous /* null when async */) {
    if (current.getValue('sys_updated_by') === gs.getProperty('socbridge.integration_user', 'socbridge.integration')) {
        return; // socbridge's own write: no need to call it back
    }
    try {
        var r = new sn_ws.RESTMessageV2('socbridge', 'ticket changed');
        r.setRequestHeader('X-Socbridge-Secret', gs.getProperty('socbridge.webhook_secret'));
        r.setRequestHeader('Content-Type', 'application/json');
        r.setRequestBody(JSON.stringify({
            table: 'incident',
            operation: 'update',
            sys_id: current.getUniqueValue(),
            number: current.getValue('number'),
            state: current.getValue('state'),
            close_code: current.getValue('close_code'),
            correlation_id: current.getValue('correlation_id'),
            sys_updated_on: current.getValue('sys_updated_on'),
            sys_updated_by: current.getValue('sys_updated_by')
        }));
        r.setHttpTimeout(10000);
        r.executeAsync(); // never hold the analyst's transaction on socbridge
    } catch (e) {
        gs.warn('socbridge webhook not sent for ' + current.getValue('number') + ': ' + e);
    }
})(current, previous);
