toDate(toDateTime(toUInt32(now()) + ?), 'UTC')
