// Switchboard web client
