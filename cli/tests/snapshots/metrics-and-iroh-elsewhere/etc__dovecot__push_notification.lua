-- Push notifications for chatmail: for every newly delivered message that the user did
-- not send themselves, set the mailbox attribute /private/messagenew; chatmail-metadata
-- receives it and notifies the user's devices.

function dovecot_lua_notify_begin_txn(user)
    return user
end

function dovecot_lua_notify_event_message_new(user, event)
    local mailbox = user:mailbox(event.mailbox)
    mailbox:sync()
    if user.username ~= event.from_address then
        mailbox:metadata_set("/private/messagenew", "")
    end
    mailbox:free()
end

function dovecot_lua_notify_end_txn(user)
end
